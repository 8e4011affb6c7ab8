"""Which runtime serves a version, decided from its card: `auto` takes the fastest that passed,
a runtime named but refused is refused with the card's reason, a converted file missing or
changed is never served; the setting takes the known runtimes only; the card is written
whole or not at all."""

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from inference_service.serving.runtimes import (
    RuntimeRefused,
    choose_runtime,
    converted_problem,
    load_runtime,
)
from inference_service.settings import InferenceSettings
from ml import versions
from ml.card import ModelCard, RuntimeRecord
from ml.versions import file_sha256, read_card, write_card

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "models" / "demo-synthetic-1"


def card_with(**runtimes: RuntimeRecord | None) -> ModelCard:
    card = ModelCard.model_validate_json((DEMO / "model_card.json").read_text())
    card.runtimes = {name: r for name, r in runtimes.items() if r is not None} or None
    return card


def passed(rate: float, file: str = "model.x") -> RuntimeRecord:
    return RuntimeRecord(
        file=file, sha256="0" * 64, passed=True, max_abs_diff=1e-7, batch32_per_s=rate
    )


def refused(reason: str) -> RuntimeRecord:
    return RuntimeRecord(
        passed=False, max_abs_diff=2e-3, batch32_per_s=900.0, refused_reason=reason
    )


def test_auto_takes_the_fastest_runtime_that_passed():
    card = card_with(tensorflow=passed(100.0), litert=passed(150.0), onnxruntime=passed(120.0))
    assert choose_runtime(card, "auto") == "litert"
    card.runtimes["onnxruntime"] = passed(151.0)
    assert choose_runtime(card, "auto") == "onnxruntime"


def test_auto_never_takes_a_refused_runtime_however_fast_and_falls_back_to_tensorflow():
    card = card_with(tensorflow=passed(100.0), litert=refused("P(malignant) differs"))
    assert choose_runtime(card, "auto") == "tensorflow"
    slower = card_with(tensorflow=passed(100.0), onnxruntime=passed(99.0))
    assert choose_runtime(slower, "auto") == "tensorflow"
    assert choose_runtime(card_with(), "auto") == "tensorflow"  # never converted


def test_a_runtime_asked_for_but_refused_on_the_card_is_refused_with_its_reason():
    card = card_with(tensorflow=passed(100.0), litert=refused("P(malignant) differs by 0.002"))
    with pytest.raises(RuntimeRefused) as refusal:
        choose_runtime(card, "litert")
    assert refusal.value.status_code == 503
    assert refusal.value.message == "runtime litert refused: P(malignant) differs by 0.002"
    with pytest.raises(RuntimeRefused, match=r"runtime onnxruntime refused: .*no onnxruntime"):
        choose_runtime(card, "onnxruntime")
    assert choose_runtime(card, "tensorflow") == "tensorflow"


def test_a_converted_file_missing_or_changed_is_not_served(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"not the converted model")
    record = passed(200.0, "model.onnx")
    assert "does not match the checksum" in converted_problem(tmp_path, record)
    assert "missing" in converted_problem(tmp_path, passed(200.0, "model.tflite"))
    card = card_with(tensorflow=passed(100.0), onnxruntime=record)
    with pytest.raises(RuntimeRefused, match=r"runtime onnxruntime refused: .*checksum"):
        load_runtime(tmp_path, card, "onnxruntime", threads=1)
    # Under auto the version still serves, on TensorFlow (None: the Keras model).
    assert load_runtime(tmp_path, card, "auto", threads=1) is None


def test_a_card_naming_a_converted_file_outside_its_folder_is_invalid():
    for file in ("../model.onnx", "/etc/passwd", "a/b.onnx"):
        with pytest.raises(ValidationError):
            RuntimeRecord(file=file, passed=True)


@pytest.mark.parametrize("value", ["tensorrt", "AUTO ", "onnx", "tensorflow;litert"])
def test_an_unknown_runtime_setting_is_refused(monkeypatch, value):
    monkeypatch.setenv("INFERENCE_RUNTIME", value)
    with pytest.raises(ValidationError, match="runtime"):
        InferenceSettings()


def test_the_runtime_settings_are_read(monkeypatch):
    monkeypatch.setenv("INFERENCE_RUNTIME", "onnxruntime")
    monkeypatch.setenv("INFERENCE_RUNTIME_THREADS", "3")
    settings = InferenceSettings()
    assert (settings.runtime, settings.runtime_threads) == ("onnxruntime", 3)
    monkeypatch.setenv("INFERENCE_RUNTIME_THREADS", "0")
    with pytest.raises(ValidationError, match="runtime_threads"):
        InferenceSettings()


def test_a_card_write_that_fails_leaves_the_old_card_whole(tmp_path, monkeypatch):
    folder = tmp_path / "v"
    folder.mkdir()
    before = (DEMO / "model_card.json").read_bytes()
    (folder / "model_card.json").write_bytes(before)
    card = read_card(folder)
    card.runtimes = {"litert": passed(1.0)}

    def fail_midway(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(versions.os, "fsync", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        write_card(folder, card)
    assert (folder / "model_card.json").read_bytes() == before
    assert [p.name for p in folder.iterdir()] == ["model_card.json"]
    monkeypatch.undo()
    write_card(folder, card)
    assert json.loads((folder / "model_card.json").read_text())["runtimes"]["litert"]["passed"]
    assert file_sha256(folder / "model_card.json") != file_sha256(DEMO / "model_card.json")

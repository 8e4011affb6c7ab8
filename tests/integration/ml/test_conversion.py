"""Conversion to LiteRT and ONNX Runtime (`ml.conversion`) on a tiny trained version: parity
with TensorFlow is checked and recorded, a conversion that drifts is refused and not served,
a failure leaves the version as it was, and each runtime predicts what TensorFlow does
through the service's `Predictor`."""

import json
import shutil

import numpy as np
import pytest

from inference_service.serving.predictor import Predictor
from ml import conversion
from ml.conversion import PARITY_FILE, PARITY_TOLERANCE, convert_version
from ml.runtimes import CONVERTED_FILES, LITERT, ONNXRUNTIME, TENSORFLOW
from ml.versions import CARD_FILE, file_sha256, read_card

CONVERTED = (LITERT, ONNXRUNTIME)


@pytest.fixture
def version(trained_versions, tmp_path):
    """A copy of 'tiny-a' without its conversions."""
    folder = shutil.copytree(trained_versions / "tiny-a", tmp_path / "tiny-a")
    for file in CONVERTED_FILES.values():
        (folder / file).unlink()
    card = json.loads((folder / CARD_FILE).read_text())
    card["runtimes"] = None
    (folder / CARD_FILE).write_text(json.dumps(card))
    return folder


def offset_by(amount: float, output: int):
    """`open_converted`, with one output (0: probability, 1: features) moved by `amount`."""
    real = conversion.open_converted

    def opened(name, path, threads):
        runner = real(name, path, threads)

        class Drifting:
            def __init__(self) -> None:
                self.name = runner.name

            def __call__(self, batch):
                outputs = list(runner(batch))
                outputs[output] = outputs[output] + np.float32(amount)
                return tuple(outputs)

        return Drifting()

    return opened


def test_conversion_passes_parity_and_records_it_on_the_card(trained_versions):
    folder = trained_versions / "tiny-a"  # converted as the tests' versions are made
    card = read_card(folder)
    assert set(card.runtimes) == {TENSORFLOW, LITERT, ONNXRUNTIME}
    for name in CONVERTED:
        record = card.runtimes[name]
        assert record.passed and record.refused_reason is None, record
        assert 0 <= record.max_abs_diff <= PARITY_TOLERANCE
        assert 0 <= record.max_abs_diff_ood_score <= PARITY_TOLERANCE
        assert record.parity_images > 0 and record.parity_source == PARITY_FILE
        assert record.single_ms > 0 and record.batch32_per_s > 0
        assert record.file == CONVERTED_FILES[name]
        assert record.sha256 == file_sha256(folder / record.file)
        assert "tensorflow" in record.converter
    assert card.runtimes[ONNXRUNTIME].converter["tf2onnx"]
    assert card.runtimes[TENSORFLOW].file == card.model_file


def test_a_conversion_whose_probability_drifts_is_refused_and_recorded(version, monkeypatch):
    monkeypatch.setattr(conversion, "open_converted", offset_by(1e-3, output=0))
    card = convert_version(version)
    for name in CONVERTED:
        record = card.runtimes[name]
        assert not record.passed and record.file is None and record.sha256 is None
        assert record.max_abs_diff == pytest.approx(1e-3, rel=0.01)
        assert "P(malignant) differs from TensorFlow's by up to 0.001" in record.refused_reason
        assert not (version / CONVERTED_FILES[name]).exists()  # a refused file is not kept
    assert read_card(version).runtimes == card.runtimes  # on the card on disk too
    assert card.runtimes[TENSORFLOW].passed


def test_a_conversion_whose_out_of_distribution_score_drifts_is_refused(version, monkeypatch):
    monkeypatch.setattr(conversion, "open_converted", offset_by(1e-2, output=1))
    record = convert_version(version, runtimes=[ONNXRUNTIME]).runtimes[ONNXRUNTIME]
    assert not record.passed and record.max_abs_diff <= PARITY_TOLERANCE
    assert record.max_abs_diff_ood_score > PARITY_TOLERANCE
    assert "out-of-distribution score differs" in record.refused_reason


def test_a_converter_that_fails_is_recorded_and_the_other_runtime_still_converts(
    version, monkeypatch
):
    def failing(served, function, work):
        raise RuntimeError("unsupported op FancyConv")

    monkeypatch.setitem(conversion.EXPORTERS, LITERT, failing)
    card = convert_version(version)
    assert not card.runtimes[LITERT].passed
    assert card.runtimes[LITERT].refused_reason == (
        "conversion failed: RuntimeError: unsupported op FancyConv"
    )
    assert card.runtimes[ONNXRUNTIME].passed
    assert (version / "model.onnx").is_file() and not (version / "model.tflite").exists()


def test_a_failure_while_recording_leaves_the_card_as_it_was(version, monkeypatch):
    before = (version / CARD_FILE).read_bytes()

    def full_disk(folder, card):
        raise OSError("No space left on device")

    monkeypatch.setattr(conversion, "write_card", full_disk)
    with pytest.raises(OSError, match="No space"):
        convert_version(version, runtimes=[ONNXRUNTIME])
    assert (version / CARD_FILE).read_bytes() == before
    assert not (version / conversion.STAGING).exists()
    assert not any(p.name.endswith(".partial") for p in version.iterdir())


def test_without_a_parity_sample_the_training_data_serve_or_every_runtime_is_refused(version):
    (version / PARITY_FILE).unlink()
    card = convert_version(version, runtimes=[LITERT])
    assert card.runtimes[LITERT].passed
    assert card.runtimes[LITERT].parity_source.startswith("validation split of ")

    raw = json.loads((version / CARD_FILE).read_text())
    raw["training_data"]["path"] = str(version / "no-such-dataset")
    raw["runtimes"] = None
    (version / CARD_FILE).write_text(json.dumps(raw))
    card = convert_version(version)
    for name in CONVERTED:
        assert not card.runtimes[name].passed
        assert "no parity images" in card.runtimes[name].refused_reason
        assert "ml.bootstrap --parity-sample" in card.runtimes[name].refused_reason


def test_a_parity_sample_of_the_wrong_shape_is_refused(version):
    with (version / PARITY_FILE).open("wb") as file:
        np.savez(file, images=np.zeros((2, 8, 8, 3), np.float32))
    card = convert_version(version, runtimes=[LITERT])
    assert not card.runtimes[LITERT].passed
    assert "does not hold (32, 32, 3) images" in card.runtimes[LITERT].refused_reason


@pytest.mark.parametrize("runtime", CONVERTED)
def test_each_runtime_predicts_what_tensorflow_does_through_the_predictor(
    trained_versions, runtime
):
    folder = trained_versions / "tiny-a"
    card = read_card(folder)
    batch = np.random.default_rng(5).random((7, 32, 32, 3), dtype=np.float32)
    reference = Predictor("tiny-a", folder, card, TENSORFLOW).predict(batch)
    converted = Predictor("tiny-a", folder, card, runtime, runtime_threads=1)
    assert converted.runtime == runtime and converted.converted is not None
    outputs = converted.predict(batch) + converted.predict(batch[:1])
    for got, expected in zip(outputs, [*reference, reference[0]], strict=True):
        assert got.malignant_probability == pytest.approx(
            expected.malignant_probability, abs=PARITY_TOLERANCE
        )
        assert got.ood_score == pytest.approx(expected.ood_score, abs=PARITY_TOLERANCE)

"""Which runtime serves a version's prediction pass, decided from its card before anything is
loaded, and the runner of that runtime (`ml.runtimes`). Grad-CAM is not concerned: it needs
gradients and stays on TensorFlow, so the Keras model is loaded whatever runs here.

`auto` serves the fastest runtime that passed parity by the card's in-process measurements
(`batch32_per_s`, recorded by `ml.conversion` at registration), else TensorFlow. A runtime
asked for by name that the card refuses, or never converted, is refused with the card's reason.
"""

import logging
from pathlib import Path

from common.errors import ServiceError
from ml.card import ModelCard, RuntimeRecord
from ml.runtimes import TENSORFLOW, Runner, open_converted
from ml.versions import file_sha256

logger = logging.getLogger("inference_service.serving")

AUTO = "auto"


class RuntimeRefused(ServiceError):
    def __init__(self, runtime: str, reason: str) -> None:
        super().__init__(503, f"runtime {runtime} refused: {reason}", code="runtime_refused")
        self.runtime = runtime
        self.reason = reason


def _servable(record: RuntimeRecord) -> bool:
    return record.passed and record.file is not None and record.batch32_per_s is not None


def choose_runtime(card: ModelCard, choice: str) -> str:
    """The runtime that serves `card`'s version when `choice` is asked for (the card only)."""
    if choice == TENSORFLOW:
        return TENSORFLOW
    records = card.runtimes or {}
    if choice == AUTO:
        baseline = records.get(TENSORFLOW)
        best, best_rate = TENSORFLOW, baseline.batch32_per_s if baseline else None
        for name, record in records.items():
            if name == TENSORFLOW or not _servable(record):
                continue
            if best_rate is None or (record.batch32_per_s or 0) > best_rate:
                best, best_rate = name, record.batch32_per_s
        return best
    record = records.get(choice)
    if record is None:
        raise RuntimeRefused(choice, f"version {card.version} has no {choice} conversion")
    if not record.passed or record.file is None:
        raise RuntimeRefused(choice, record.refused_reason or "it did not pass parity")
    return choice


def converted_problem(folder: Path, record: RuntimeRecord) -> str | None:
    """Why the converted file the record names cannot be served, or None when it can."""
    path = folder / (record.file or "")
    if record.file is None or not path.is_file():
        return f"{record.file} is missing from the version folder"
    if file_sha256(path) != record.sha256:
        return f"{record.file} does not match the checksum on its card"
    return None


def load_runtime(folder: Path, card: ModelCard, choice: str, threads: int) -> Runner | None:
    """The runner of the chosen runtime, or None when it is TensorFlow (the caller's own
    Keras model serves). A converted file that is missing or changed is refused when asked for
    by name; under `auto`, TensorFlow serves instead."""
    name = choose_runtime(card, choice)
    if name == TENSORFLOW:
        return None
    record = (card.runtimes or {})[name]
    problem = converted_problem(folder, record)
    if problem is not None:
        if choice != AUTO:
            raise RuntimeRefused(name, problem)
        logger.warning("serving %s on tensorflow instead of %s: %s", card.version, name, problem)
        return None
    return open_converted(name, folder / (record.file or ""), threads)

"""Convert a model version's prediction pass to faster CPU runtimes, and keep only what
matches TensorFlow.

For each runtime (LiteRT, ONNX Runtime): convert the Keras model (float32, no quantisation)
with both outputs the service needs (P(malignant) and the out-of-distribution layer's
features), run it and TensorFlow on the version's parity images, and refuse it when the
largest absolute difference in P(malignant) or in the out-of-distribution score exceeds
`PARITY_TOLERANCE`. Then measure each in-process: the median of single-image calls and the
throughput of calls of 32. The results go on the card (`runtimes`), the files beside the
model; files first, then the card, each by an atomic rename, so a failure leaves the version
as it was.

The parity images are `parity_sample.npz` (preprocessed validation images, written by
training and `python -m ml.bootstrap --parity-sample`), else the validation split of the
training data when it is at hand; with neither, every conversion is refused with that reason.

    python -m ml.conversion FOLDER [--force]
"""

import argparse
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ml.card import ModelCard, RuntimeRecord
from ml.ood import Mahalanobis
from ml.runtimes import (
    CONVERTED_FILES,
    LITERT,
    ONNXRUNTIME,
    SIGNATURE,
    TENSORFLOW,
    Runner,
    RunnerOutput,
    TensorFlowRunner,
    open_converted,
    served_model,
    serving_function,
)
from ml.versions import file_sha256, read_card, write_atomically, write_card

if TYPE_CHECKING:
    from ml.datasets import Sample

PARITY_FILE = "parity_sample.npz"
# The bar: a converted model whose P(malignant) (or OOD score) differs from
# TensorFlow's by more than this on any parity image is not served.
PARITY_TOLERANCE = 1e-4
# Validation images kept for the parity check: enough to cover both classes, small enough to
# ship with the demo version (under 1 MB compressed at 128x128).
PARITY_SAMPLE_IMAGES = 16
CONVERTED = (LITERT, ONNXRUNTIME)
ONNX_OPSET = 17
# Timing: calls after one warm-up call, at least this many, for at most about this long.
TIMING_MIN_CALLS = 5
TIMING_BUDGET_S = 0.5
STAGING = ".conversion.partial"


class ConversionError(ValueError):
    pass


# Parity images


def parity_sample_from(samples: "Sequence[Sample]", size: int) -> np.ndarray:
    """The first `PARITY_SAMPLE_IMAGES` samples, preprocessed as the service does."""
    from ml.contract import decode_image, preprocess_image

    chosen = list(samples)[:PARITY_SAMPLE_IMAGES]
    if not chosen:
        raise ConversionError("no images to take a parity sample from")
    return np.stack([preprocess_image(decode_image(s.path), size) for s in chosen])


def write_parity_sample(folder: Path, images: np.ndarray) -> Path:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=np.asarray(images, dtype=np.float32))
    return write_atomically(folder / PARITY_FILE, buffer.getvalue())


def validation_images(card: ModelCard, data: Path) -> np.ndarray:
    """The parity sample of the validation split the version was trained with, from `data`."""
    from ml.datasets import read_dataset
    from ml.preprocessing import check_files, split_by_patient

    recipe = card.training_data
    samples, _ = read_dataset(data, recipe.layout)
    checked = check_files(samples, recipe.min_size)
    split = split_by_patient(
        checked.kept, recipe.validation_fraction, recipe.test_fraction, recipe.seed
    )
    return parity_sample_from(split.validation, card.input.side)


def parity_images(folder: Path, card: ModelCard) -> tuple[np.ndarray, str]:
    """The images to check parity on, and where they came from."""
    path = folder / PARITY_FILE
    if path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            images = np.asarray(stored["images"], dtype=np.float32)
        side = card.input.side
        if images.ndim != 4 or images.shape[1:] != (side, side, 3) or not len(images):
            raise ConversionError(f"{PARITY_FILE} does not hold ({side}, {side}, 3) images")
        return images, PARITY_FILE
    data = Path(card.training_data.path)
    if data.is_dir():
        try:
            return validation_images(card, data), f"validation split of {data}"
        except Exception as exc:  # a dataset changed or damaged since training
            raise ConversionError(f"no {PARITY_FILE}, and {data} cannot be read: {exc}") from exc
    raise ConversionError(
        f"no parity images: the version has no {PARITY_FILE} and its training data "
        f"({data}) is not here (`python -m ml.bootstrap --parity-sample` adds the sample)"
    )


# Converters


def export_litert(served: Any, function: Any, work: Path) -> bytes:
    """Keras -> SavedModel (`ExportArchive`) -> LiteRT flatbuffer, float32."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(served)
    archive.add_endpoint(SIGNATURE, function)
    archive.write_out(str(work / "saved_model"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(work / "saved_model"), signature_keys=[SIGNATURE]
    )
    return bytes(converter.convert())


def export_onnx(served: Any, function: Any, work: Path) -> bytes:
    """The `tf.function` of the fixed signature -> ONNX (tf2onnx), float32."""
    import tf2onnx

    proto, _ = tf2onnx.convert.from_function(
        function, input_signature=function.input_signature, opset=ONNX_OPSET
    )
    return proto.SerializeToString()


EXPORTERS: dict[str, Callable[[Any, Any, Path], bytes]] = {
    LITERT: export_litert,
    ONNXRUNTIME: export_onnx,
}


def converter_versions(runtime: str) -> dict[str, str]:
    import tensorflow as tf

    versions = {"tensorflow": tf.__version__}
    if runtime == LITERT:
        from importlib.metadata import version

        versions["ai-edge-litert"] = version("ai-edge-litert")
    elif runtime == ONNXRUNTIME:
        import onnxruntime
        import tf2onnx

        versions |= {
            "tf2onnx": tf2onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "opset": str(ONNX_OPSET),
        }
    return versions


# Parity and speed


def run_all(runner: Runner, images: np.ndarray) -> tuple[RunnerOutput, RunnerOutput]:
    """The outputs for the images as one batch, and one at a time (both shapes serve)."""
    whole = runner(images)
    singles = [runner(image[None]) for image in images]
    probabilities = np.concatenate([p for p, _ in singles])
    features = [f for _, f in singles]
    one_by_one = (
        probabilities,
        None if features[0] is None else np.concatenate([f for f in features if f is not None]),
    )
    return whole, one_by_one


def largest_differences(
    reference: RunnerOutput, candidate: RunnerOutput, ood: Mahalanobis | None
) -> tuple[float, float | None]:
    """The largest absolute difference in P(malignant), and in the OOD score."""
    p_diff = float(np.max(np.abs(reference[0] - candidate[0])))
    if ood is None or reference[1] is None or candidate[1] is None:
        return p_diff, None
    score_diff = np.abs(ood.scores(reference[1]) - ood.scores(candidate[1]))
    return p_diff, float(np.max(score_diff))


def timed(runner: Runner, batch: np.ndarray) -> list[float]:
    runner(batch)  # warm-up: the first call allocates
    durations: list[float] = []
    started = time.perf_counter()
    while len(durations) < TIMING_MIN_CALLS or time.perf_counter() - started < TIMING_BUDGET_S:
        begin = time.perf_counter()
        runner(batch)
        durations.append(time.perf_counter() - begin)
        if len(durations) >= 200:
            break
    return durations


def speed(runner: Runner, images: np.ndarray) -> tuple[float, float]:
    """Median milliseconds of one single-image call; images per second in calls of 32."""
    batch = np.resize(images, (32, *images.shape[1:])).astype(np.float32)
    single = statistics.median(timed(runner, images[:1])) * 1000
    per_batch = statistics.median(timed(runner, batch))
    return round(single, 3), round(32 / per_batch, 1)


def check_runner(
    runner: Runner, reference: tuple[RunnerOutput, RunnerOutput], images: np.ndarray, ood: Any
) -> tuple[float, float | None, str | None]:
    """The largest differences over both shapes, and why the runtime is refused, if it is."""
    outputs = run_all(runner, images)
    diffs = [largest_differences(r, c, ood) for r, c in zip(reference, outputs, strict=True)]
    p_diff = max(d[0] for d in diffs)
    scores = [d[1] for d in diffs if d[1] is not None]
    score_diff = max(scores) if scores else None
    if not np.isfinite(p_diff) or p_diff > PARITY_TOLERANCE:
        return (
            p_diff,
            score_diff,
            (
                f"P(malignant) differs from TensorFlow's by up to {p_diff:.3g} on the parity "
                f"images (tolerance {PARITY_TOLERANCE:g})"
            ),
        )
    if score_diff is not None and (not np.isfinite(score_diff) or score_diff > PARITY_TOLERANCE):
        return (
            p_diff,
            score_diff,
            (
                f"the out-of-distribution score differs from TensorFlow's by up to "
                f"{score_diff:.3g} on the parity images (tolerance {PARITY_TOLERANCE:g})"
            ),
        )
    return p_diff, score_diff, None


def convert_version(
    folder: Path, runtimes: Sequence[str] = CONVERTED, threads: int = 2
) -> ModelCard:
    """Convert, check and measure each runtime; record all on the card. Returns the card."""
    import keras

    card = read_card(folder)
    model_path = folder / card.model_file
    if not model_path.is_file() or file_sha256(model_path) != card.model_sha256:
        raise ConversionError(f"{model_path} is missing or does not match its card")
    now = datetime.now(UTC)
    records: dict[str, RuntimeRecord] = {}
    try:
        images, source = parity_images(folder, card)
    except ConversionError as exc:
        refused = RuntimeRecord(passed=False, refused_reason=str(exc), converted_at=now)
        records = {name: refused for name in runtimes}
        card.runtimes = {**(card.runtimes or {}), **records}
        write_card(folder, card)
        return card
    ood_card = card.out_of_distribution
    ood = Mahalanobis.load(folder / ood_card.file) if ood_card else None
    layer = ood_card.layer if ood_card else None
    model = keras.models.load_model(model_path, compile=False)
    served = served_model(model, layer)
    function = serving_function(served, card.input.side)
    baseline = TensorFlowRunner(function)
    reference = run_all(baseline, images)
    single_ms, per_s = speed(baseline, images)
    records[TENSORFLOW] = RuntimeRecord(
        file=card.model_file,
        sha256=card.model_sha256,
        passed=True,
        max_abs_diff=0.0,
        max_abs_diff_ood_score=0.0 if ood else None,
        parity_images=len(images),
        parity_source=source,
        single_ms=single_ms,
        batch32_per_s=per_s,
        converter=converter_versions(TENSORFLOW),
        converted_at=now,
    )
    staging = folder / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        with tempfile.TemporaryDirectory() as work:
            for name in runtimes:
                records[name] = convert_one(
                    name, served, function, Path(work), staging, images, reference, ood, threads
                )
                records[name].parity_source = source
                records[name].converted_at = now
        # Files first, then the card that names them.
        for name, record in records.items():
            if name != TENSORFLOW and record.file is not None:
                (staging / record.file).replace(folder / record.file)
        card.runtimes = {**(card.runtimes or {}), **records}
        write_card(folder, card)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return card


def convert_one(
    name: str,
    served: Any,
    function: Any,
    work: Path,
    staging: Path,
    images: np.ndarray,
    reference: tuple[RunnerOutput, RunnerOutput],
    ood: Mahalanobis | None,
    threads: int,
) -> RuntimeRecord:
    versions = converter_versions(name)
    try:
        converted = EXPORTERS[name](served, function, work)
        path = write_atomically(staging / CONVERTED_FILES[name], converted)
        runner = open_converted(name, path, threads)
    except Exception as exc:  # a converter that cannot handle the model: recorded, not served
        return RuntimeRecord(
            passed=False,
            converter=versions,
            refused_reason=f"conversion failed: {type(exc).__name__}: {exc}"[:500],
        )
    p_diff, score_diff, refused = check_runner(runner, reference, images, ood)
    single_ms, per_s = speed(runner, images)
    return RuntimeRecord(
        file=None if refused else path.name,
        sha256=None if refused else file_sha256(path),
        passed=refused is None,
        max_abs_diff=p_diff,
        max_abs_diff_ood_score=score_diff,
        parity_images=len(images),
        single_ms=single_ms,
        batch32_per_s=per_s,
        converter=versions,
        refused_reason=refused,
    )


def needs_conversion(card: ModelCard, runtimes: Sequence[str] = CONVERTED) -> bool:
    recorded = card.runtimes or {}
    return any(name not in recorded for name in runtimes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Convert a model version to LiteRT and ONNX, check parity, measure speed."
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--force", action="store_true", help="convert again even when the card records it"
    )
    args = parser.parse_args(argv)
    card = read_card(args.folder)
    if args.force or needs_conversion(card):
        card = convert_version(args.folder, threads=args.threads)
    runtimes = {name: r.model_dump(mode="json") for name, r in (card.runtimes or {}).items()}
    print(json.dumps({"version": card.version, "runtimes": runtimes}, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The prediction pass on each CPU runtime: TensorFlow (the model as trained), LiteRT and ONNX
Runtime (its conversions, `ml.conversion`). Each runner takes a float32 (n, side, side, 3)
batch and gives P(malignant) per image and, when asked for, the features the
out-of-distribution score is computed from, as NumPy arrays.

Conversion checks parity and measures speed with these runners and the inference service
serves with them, so what was checked is what serves. Grad-CAM is not here: it needs
gradients, which only TensorFlow gives, so the service keeps the Keras model for it.
"""

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import keras

TENSORFLOW = "tensorflow"
LITERT = "litert"
ONNXRUNTIME = "onnxruntime"
RUNTIME_NAMES = (TENSORFLOW, LITERT, ONNXRUNTIME)
# The converted model's file in the version folder, by runtime.
CONVERTED_FILES = {LITERT: "model.tflite", ONNXRUNTIME: "model.onnx"}
# Names inside the converted models: one input, two outputs (the second only when the card
# has out-of-distribution statistics to score the features against).
INPUT = "image"
PROBABILITY = "probability"
FEATURES = "features"
SIGNATURE = "serve"

RunnerOutput = tuple[np.ndarray, np.ndarray | None]


class Runner(Protocol):
    name: str

    def __call__(self, batch: np.ndarray) -> RunnerOutput:
        """P(malignant) of each image, shape (n,); the features (n, d) or None."""
        ...


def served_model(model: "keras.Model", feature_layer: str | None) -> "keras.Model":
    """The model with named outputs: the probability and, given a layer, its features."""
    import keras

    outputs = {PROBABILITY: model.output}
    if feature_layer is not None:
        outputs[FEATURES] = model.get_layer(feature_layer).output
    return keras.Model(model.inputs, outputs)


def serving_function(served: "keras.Model", side: int) -> Any:
    """`served` as a `tf.function` of a fixed signature (any batch size): traced once."""
    import tensorflow as tf

    signature = [tf.TensorSpec([None, side, side, 3], tf.float32, name=INPUT)]
    return tf.function(lambda x: served(x, training=False), input_signature=signature)


def _split(outputs: dict[str, Any]) -> RunnerOutput:
    probabilities = np.asarray(outputs[PROBABILITY], dtype=np.float32).reshape(-1)
    features = outputs.get(FEATURES)
    if features is None:
        return probabilities, None
    features = np.asarray(features, dtype=np.float32)
    return probabilities, features.reshape(len(features), -1)


class TensorFlowRunner:
    name = TENSORFLOW

    def __init__(self, function: Any) -> None:
        self.function = function

    @classmethod
    def of(cls, model: "keras.Model", side: int, feature_layer: str | None) -> "TensorFlowRunner":
        return cls(serving_function(served_model(model, feature_layer), side))

    def __call__(self, batch: np.ndarray) -> RunnerOutput:
        return _split(self.function(batch))


class LiteRTRunner:
    name = LITERT

    def __init__(self, path: Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.run = self.interpreter.get_signature_runner(SIGNATURE)
        # An interpreter holds its tensors between calls: one call at a time.
        self.lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> RunnerOutput:
        with self.lock:
            # The signature runner resizes the input to the batch's size when it changed.
            outputs = self.run(**{INPUT: np.ascontiguousarray(batch, dtype=np.float32)})
        return _split(outputs)


class OnnxRuntimeRunner:
    name = ONNXRUNTIME

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning worker threads wait busy between calls and starve the rest of the service
        # on two cores: measured at 78 img/s against TensorFlow's 105 in the service with
        # spinning on (benchmarks/runtimes.py measures it again).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        self.outputs = [output.name for output in self.session.get_outputs()]

    def __call__(self, batch: np.ndarray) -> RunnerOutput:
        values = self.session.run(None, {INPUT: np.ascontiguousarray(batch, dtype=np.float32)})
        return _split(dict(zip(self.outputs, values, strict=True)))


def open_converted(name: str, path: Path, threads: int) -> Runner:
    """The runner of a converted model file."""
    if name == LITERT:
        return LiteRTRunner(path, threads)
    if name == ONNXRUNTIME:
        return OnnxRuntimeRunner(path, threads)
    raise ValueError(f"no converted model for runtime {name!r}")

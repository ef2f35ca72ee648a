"""TFLite export (Keras → SavedModel → LiteRT flatbuffer) and evaluation with the LiteRT interpreter."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

VARIANTS = ("float32", "int8")


def convert(model, variant: str, representative: np.ndarray | None = None) -> bytes:
    """Convert a Keras model to a ``.tflite`` flatbuffer with builtin ops only.

    ``float32``: no quantization. ``int8``: full-integer quantization (uint8 pixels in, uint8
    probabilities out) calibrated on ``representative`` images (float pixels in [0, 255]).
    """
    import tensorflow as tf

    if variant not in VARIANTS:
        raise ValueError(f"unknown TFLite variant {variant!r}; choose from {VARIANTS}")
    with tempfile.TemporaryDirectory() as saved_model_dir:
        model.export(saved_model_dir, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        if variant == "float32":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        else:
            if representative is None or len(representative) == 0:
                raise ValueError("int8 export needs representative images from the training split")

            def samples():
                for image in representative:
                    yield [image[None].astype(np.float32)]

            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = samples
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
        return converter.convert()


class TFLiteClassifier:
    """Runs a ``.tflite`` classifier with the LiteRT interpreter; handles quantized inputs/outputs."""

    def __init__(self, model: bytes | str | Path, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        content = Path(model).read_bytes() if isinstance(model, (str, Path)) else model
        self.interpreter = Interpreter(model_content=content, num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @property
    def image_size(self) -> int:
        return int(self.input["shape"][1])

    def _quantize(self, pixels: np.ndarray) -> np.ndarray:
        dtype = self.input["dtype"]
        if dtype == np.float32:
            return pixels.astype(np.float32)
        scale, zero_point = self.input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(pixels / scale + zero_point), info.min, info.max).astype(dtype)

    def _dequantize(self, values: np.ndarray) -> np.ndarray:
        if self.output["dtype"] == np.float32:
            return values.astype(np.float32)
        scale, zero_point = self.output["quantization"]
        return (values.astype(np.float32) - zero_point) * scale

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities for uint8/float RGB images of shape (N, size, size, 3), one at a time."""
        outputs = []
        for image in images:
            self.interpreter.set_tensor(self.input["index"], self._quantize(image[None].astype(np.float32)))
            self.interpreter.invoke()
            outputs.append(self._dequantize(self.interpreter.get_tensor(self.output["index"])[0]))
        return np.stack(outputs) if outputs else np.zeros((0, int(self.output["shape"][-1])), np.float32)

    def custom_ops(self) -> list[str]:
        """Names of non-builtin (custom/Flex) ops in the graph; empty for a mobile-ready model."""
        return sorted({op["op_name"] for op in self.interpreter._get_ops_details() if op["op_name"].startswith(("Flex", "Custom"))})

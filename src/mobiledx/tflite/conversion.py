"""TFLite export (Keras → SavedModel → LiteRT flatbuffer) and evaluation with the LiteRT interpreter.

Models take an ``image`` input (N, S, S, 3 float32 pixels in [0, 255]; the model normalises them
itself) and optionally a ``metadata`` input (N, M float32, already encoded outside the model so
that the graph stays builtin-ops only). Inputs are always matched by name, never by position: the
converter and the interpreter order tensors their own way.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from mobiledx.paths import VARIANTS
from mobiledx.tflite.quantization import (
    DEFAULT_FLOAT_STRIDE,
    DEFAULT_RANGE_PERCENTILE,
    float_depthwise_weights,
    quantize_int8,
)

if TYPE_CHECKING:
    from mobiledx.data.cache import RowView

INPUT_ROLES = ("image", "metadata")

Representative = Union[np.ndarray, "RowView", tuple]  # images (or a RowView of the cache), or (images, metadata)


def input_role(name: str, count: int) -> str:
    """``image`` or ``metadata`` for an input tensor/signature name (a lone input is the image)."""
    lowered = name.lower()
    if "metadata" in lowered:
        return "metadata"
    if "image" in lowered or count == 1:
        return "image"
    raise ValueError(f"model input {name!r} is neither the 'image' nor the 'metadata' input")


def _roles(names: list[str]) -> dict[str, str]:
    """``{name: role}`` for all inputs, with a clear error on duplicates or a missing image input."""
    roles = {name: input_role(name, len(names)) for name in names}
    for role in INPUT_ROLES:
        if list(roles.values()).count(role) > 1:
            raise ValueError(f"more than one model input matches {role!r}: {sorted(roles)}")
    if "image" not in roles.values():
        raise ValueError(f"no model input named like 'image' among {sorted(roles)}")
    return roles


def _split_representative(representative: Representative | None) -> tuple:
    """``(images, metadata)``; images stay as given (an array or a lazy view of the image cache)."""
    if representative is None:
        return None, None
    if isinstance(representative, tuple):
        if len(representative) != 2:
            raise ValueError("representative data must be images or a tuple (images, metadata)")
        images, metadata = representative
        metadata = None if metadata is None else np.asarray(metadata, dtype=np.float32)
        if metadata is not None and len(metadata) != len(images):
            raise ValueError(f"representative images ({len(images)}) and metadata ({len(metadata)}) differ in length")
        return images, metadata
    return representative, None


def _signature_input_names(saved_model_dir: str, signature: str = "serving_default") -> list[str]:
    """Input names of a SavedModel signature, read from ``saved_model.pb`` (no graph loading)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())
    for meta_graph in saved_model.meta_graphs:
        if signature in meta_graph.signature_def:
            return list(meta_graph.signature_def[signature].inputs)
    raise ValueError(f"{saved_model_dir} has no {signature!r} signature")


def convert(model, variant: str, representative: Representative | None = None,
            range_percentile: float = DEFAULT_RANGE_PERCENTILE, float_stride: int = DEFAULT_FLOAT_STRIDE) -> bytes:
    """Convert a Keras model to a ``.tflite`` flatbuffer with builtin ops only.

    - ``float32``: no quantization.
    - ``float16``: float16 weights (``Optimize.DEFAULT`` + ``supported_types=[tf.float16]``); float32 I/O.
    - ``dynamic_range``: int8 weights, float activations (``Optimize.DEFAULT``, no calibration data);
      depthwise convolutions keep float weights, so that LiteRT's CPU accelerator runs the whole graph.
    - ``int8``: int8 weights and activations, calibrated on ``representative``: training images
      (float pixels in [0, 255]), or a tuple ``(images, metadata)`` for a model with a metadata
      input; float32 input and output; the input preprocessing, the ops whose output keeps at least
      1/``float_stride`` of the input's resolution and the final softmax in float; activation ranges
      clipped at ``range_percentile`` (see :mod:`mobiledx.tflite.quantization`), so that
      LiteRT's CPU accelerator runs the whole graph. Calibration samples are fed by the SavedModel
      signature's input names, so input order never matters.

    ``representative``, ``range_percentile`` and ``float_stride`` are only used by ``int8``.
    """
    return convert_variants(model, (variant,), representative, range_percentile, float_stride)[variant]


def convert_variants(model, variants=VARIANTS, representative: Representative | None = None,
                     range_percentile: float = DEFAULT_RANGE_PERCENTILE,
                     float_stride: int = DEFAULT_FLOAT_STRIDE) -> dict[str, bytes]:
    """``{variant: flatbuffer}`` for several variants (see :func:`convert`) from ONE SavedModel export.

    Tracing the Keras model (``model.export``) is the slow part of a conversion, so it is done once.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown TFLite variant {unknown[0]!r}; choose from {VARIANTS}")
    images, metadata = _split_representative(representative)
    if "int8" in variants and (images is None or len(images) == 0):
        raise ValueError("int8 export needs representative images from the training split")
    with batch1_saved_model(model) as saved_model_dir:
        return {variant: _convert_saved_model(saved_model_dir, variant, images, metadata, range_percentile,
                                              float_stride) for variant in variants}


@contextmanager
def batch1_saved_model(model) -> Iterator[str]:
    """A temporary SavedModel of ``model`` with a batch-1 signature: the directory, removed on exit.

    Batch 1, as apps run it: every shape is static, so no dynamic-shape op (SHAPE, PACK, ...) is left
    for LiteRT to run outside its CPU accelerator.
    """
    import tensorflow as tf

    specs = [tf.TensorSpec((1, *tensor.shape[1:]), tf.float32, name=tensor.name) for tensor in model.inputs]
    with tempfile.TemporaryDirectory() as saved_model_dir:
        model.export(saved_model_dir, format="tf_saved_model", verbose=False,
                     input_signature=[specs if len(specs) > 1 else specs[0]])
        yield saved_model_dir


def _convert_saved_model(saved_model_dir: str, variant: str, images: np.ndarray | None,
                         metadata: np.ndarray | None, range_percentile: float, float_stride: int) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic_range":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return float_depthwise_weights(converter.convert())
    elif variant == "int8":
        roles = _roles(_signature_input_names(saved_model_dir))
        if "metadata" in roles.values() and metadata is None:
            raise ValueError("the model has a metadata input: int8 calibration needs (images, metadata)")
        if "metadata" not in roles.values() and metadata is not None:
            raise ValueError("metadata calibration data given, but the model has no metadata input")
        arrays = {"image": images, "metadata": metadata}

        def samples():  # dicts keyed by signature input name: the calibrator orders them itself
            for i in range(len(images)):
                yield {name: np.asarray(arrays[role][i : i + 1], np.float32) for name, role in roles.items()}

        image_input = next(name for name, role in roles.items() if role == "image")
        return quantize_int8(converter, samples, image_input, range_percentile, float_stride)
    return converter.convert()


class TFLiteClassifier:
    """Runs a ``.tflite`` classifier with the LiteRT interpreter; handles quantized inputs/outputs.

    Inputs are found by name: the tensor whose name contains ``metadata`` takes the metadata, the
    one containing ``image`` (or the only input) the pixels. Each is quantized with its own params.
    """

    def __init__(self, model: bytes | str | Path, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.content = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
        self.num_threads = int(num_threads)
        self.interpreter = Interpreter(model_content=self.content, num_threads=self.num_threads)
        self.interpreter.allocate_tensors()
        details = self.interpreter.get_input_details()
        roles = _roles([d["name"] for d in details])
        self.inputs = {roles[d["name"]]: d for d in details}
        self.input = self.inputs["image"]
        self.output = self.interpreter.get_output_details()[0]

    @property
    def image_size(self) -> int:
        return int(self.input["shape"][1])

    @property
    def has_metadata(self) -> bool:
        return "metadata" in self.inputs

    @property
    def num_classes(self) -> int:
        return int(self.output["shape"][-1])

    @staticmethod
    def _quantize(detail: dict, values: np.ndarray) -> np.ndarray:
        dtype = detail["dtype"]
        if dtype == np.float32:
            return values.astype(np.float32)
        scale, zero_point = detail["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(dtype)

    def _dequantize(self, values: np.ndarray) -> np.ndarray:
        if self.output["dtype"] == np.float32:
            return values.astype(np.float32)
        scale, zero_point = self.output["quantization"]
        return (values.astype(np.float32) - zero_point) * scale

    def _check(self, images: np.ndarray, metadata: np.ndarray | None) -> None:
        if self.has_metadata and metadata is None:
            raise ValueError("this model has a metadata input: pass metadata=(N, M) encoded features")
        if not self.has_metadata and metadata is not None:
            raise ValueError("metadata given, but this model has no metadata input")
        if metadata is not None and len(metadata) != len(images):
            raise ValueError(f"{len(images)} images but {len(metadata)} metadata rows")

    def _set_inputs(self, images: np.ndarray, metadata: np.ndarray | None, i: int) -> None:
        arrays = {"image": images, "metadata": metadata}
        for role, detail in self.inputs.items():
            value = np.asarray(arrays[role][i : i + 1], dtype=np.float32)
            self.interpreter.set_tensor(detail["index"], self._quantize(detail, value))

    def predict(self, images, metadata: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities for RGB images (N, size, size, 3), uint8 or float in [0, 255], one at a time
        (``images``: an array or a lazy view of the image cache, read one image at a time).

        ``metadata`` (N, M), already encoded, is required exactly when the model has a metadata input.
        """
        self._check(images, metadata)
        outputs = []
        for i in range(len(images)):
            self._set_inputs(images, metadata, i)
            self.interpreter.invoke()
            outputs.append(self._dequantize(self.interpreter.get_tensor(self.output["index"])[0]))
        return np.stack(outputs) if outputs else np.zeros((0, self.num_classes), np.float32)

    def quantization(self) -> dict[str, dict]:
        """dtype, scale and zero point of every input (by role) and of the output."""

        def describe(detail: dict) -> dict:
            scale, zero_point = detail["quantization"]
            return {"dtype": np.dtype(detail["dtype"]).name, "scale": float(scale), "zero_point": int(zero_point)}

        return {"inputs": {role: describe(d) for role, d in self.inputs.items()}, "output": describe(self.output)}

    def custom_ops(self) -> list[str]:
        """Names of non-builtin (custom/Flex) ops in the graph; empty for a mobile-ready model."""
        names = {op["op_name"] for op in self.interpreter._get_ops_details()}
        return sorted(name for name in names if name.startswith(("Flex", "Custom")))

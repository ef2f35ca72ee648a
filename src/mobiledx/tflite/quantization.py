"""int8 post-training quantization that keeps the pipeline's predictions.

Built on TF's public ``QuantizationDebugger`` (selective quantization), with three changes to what the
converter would do by itself, each chosen on the demo validation splits (figures: docs/tutorial/5-phone.md, "int8 keeps
the pixels" and "int8 keeps its high-resolution layers in float"):

- **Activation ranges clipped at a percentile of the calibration activations** instead of their
  min/max. A few outliers (residual ADDs up to ±21 while 99.99 % of values lie within ±9–16) would
  otherwise set the int8 step for every value of the tensor.
- **The input preprocessing stays in float** (the elementwise ops fed only by the image input, e.g.
  MobileNet's ``x / 127.5 - 1``). Quantized, its MUL takes the range of the following ADD ([-1, 2]),
  so one int8 step is 1.5 pixel levels: the image itself loses resolution before the first layer.
- **The high-resolution layers stay in float**: every op whose output keeps at least 1/``float_stride``
  of the input's resolution (MobileNetV2 at stride 8: the stem and the first six inverted-residual
  blocks, under 2 % of the weights). They carried most of the int8 error: in float, the KL
  divergence to the Keras model falls about 10x.

The percentiles come from per-tensor histograms accumulated one calibration image at a time, so
memory stays that of one inference, whatever the number of calibration images.

:func:`share_zero_points` stores each distinct zero-point vector of a quantized flatbuffer once;
:func:`float_depthwise_weights` keeps a dynamic-range model's depthwise convolutions on XNNPACK.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Iterator

import flatbuffers
import numpy as np

# Ops the int8 variant keeps in float: XNNPACK (LiteRT's CPU accelerator) has no int8 softmax, stand-alone ReLU
# (fused ones are fine) nor hard-swish (MobileNetV3: float hard-swish made MobileNetV3Large at 224 px fully
# delegated and 3x faster, 2.8 vs 8.4 ms). Its int8 AVERAGE_POOL_2D is missing too (XNNPACK#3040), but the
# converter quantizes average pooling whatever the denylist says.
FLOAT_OPS = ("SOFTMAX", "RELU", "HARD_SWISH")
PREPROCESSING_OPS = frozenset({"MUL", "ADD", "SUB", "DIV"})  # the input normalisations of models.backbones
DEFAULT_RANGE_PERCENTILE = 99.999  # as params.yaml's export.int8_range_percentile (measured: docs/tutorial/5-phone.md)
DEFAULT_FLOAT_STRIDE = 8  # as params.yaml's export.int8_float_stride (measured: docs/tutorial/5-phone.md)
RANGE_BINS = 4096  # histogram bins over each tensor's calibrated [min, max]


def clipped_range(counts: np.ndarray, low: float, high: float, percentile: float) -> tuple[float, float]:
    """``(min, max)`` keeping the central ``percentile`` % of a histogram over ``[low, high]``.

    Each bound is the outer edge of the bin holding that quantile, so the range never cuts inside
    it; it only ever narrows ``[low, high]``, and keeps 0 inside when ``[low, high]`` holds it (a
    ReLU's zero must stay exact).
    """
    if not 50.0 < percentile <= 100.0:
        raise ValueError(f"the int8 range percentile must be in (50, 100], got {percentile}")
    cumulative = np.cumsum(counts)
    total = cumulative[-1]
    if total == 0 or high <= low:
        return low, high
    edges = np.linspace(low, high, len(counts) + 1)
    tail = total * (100.0 - percentile) / 100.0
    first = int(np.searchsorted(cumulative, max(tail, 1), side="left"))
    last = int(np.searchsorted(cumulative, total - tail, side="left"))
    new_low, new_high = float(edges[first]), float(edges[last + 1])
    if low <= 0.0 <= high:
        new_low, new_high = min(new_low, 0.0), max(new_high, 0.0)
    return max(new_low, low), min(new_high, high)


class _RangeHistograms:
    """Per-tensor histograms of a calibrated float model's activations, one inference at a time."""

    def __init__(self, calibrated: bytes, tensors: dict[int, tuple[float, float]]):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        # No delegate: a delegated graph does not materialise its intermediate tensors.
        self.interpreter = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True,
                                       experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.interpreter.allocate_tensors()
        self.inputs = {d["name"]: d["index"] for d in self.interpreter.get_input_details()}
        self.ranges = {index: (low, high) for index, (low, high) in tensors.items() if high > low}
        self.counts = {index: np.zeros(RANGE_BINS, np.int64) for index in self.ranges}

    def add(self, sample: dict[str, np.ndarray]) -> None:
        for name, value in sample.items():
            self.interpreter.set_tensor(self.inputs[_graph_input_name(name, self.inputs)], value)
        self.interpreter.invoke()
        for index, (low, high) in self.ranges.items():
            values = self.interpreter.tensor(index)().ravel()  # a view, valid until the next invoke
            bins = ((values - low) * (RANGE_BINS / (high - low))).astype(np.int64)
            np.clip(bins, 0, RANGE_BINS - 1, out=bins)
            self.counts[index] += np.bincount(bins, minlength=RANGE_BINS)

    def clipped(self, percentile: float) -> dict[int, tuple[float, float]]:
        return {index: clipped_range(self.counts[index], low, high, percentile)
                for index, (low, high) in self.ranges.items()}


def _graph_input_name(signature_name: str, graph_names) -> str:
    """The converted graph's name for a signature input (the converter prefixes ``serving_default_``)."""
    for name in graph_names:
        if name in (signature_name, f"serving_default_{signature_name}:0"):
            return name
    raise ValueError(f"the converted model has no input for {signature_name!r}: {sorted(graph_names)}")


def _float_outputs(model, image_input: int, float_stride: int) -> list[str]:
    """Names of the tensors int8 keeps in float: the outputs of the elementwise ops fed only by the image
    input (and constants), and every 4-D output at least 1/``float_stride`` of the input's height (0: none)."""
    from tensorflow.lite.tools import flatbuffer_utils

    graph = model.subgraphs[0]
    constant = {i for i, tensor in enumerate(graph.tensors) if model.buffers[tensor.buffer].data is not None}
    from_image, names = {image_input}, []
    for op in graph.operators:
        kind = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
        variable = [i for i in op.inputs if i >= 0 and i not in constant]
        if kind in PREPROCESSING_OPS and variable and all(i in from_image for i in variable):
            from_image.update(op.outputs)
            names.extend(graph.tensors[i].name.decode() for i in op.outputs)
    if float_stride:
        lowest = graph.tensors[image_input].shape[1] // float_stride
        names.extend(graph.tensors[i].name.decode() for op in graph.operators for i in op.outputs
                     if len(graph.tensors[i].shape) == 4 and graph.tensors[i].shape[1] >= lowest
                     and i not in from_image)
    return names


def quantize_int8(converter, samples: Callable[[], Iterator[dict[str, np.ndarray]]], image_input: str,
                  percentile: float, float_stride: int) -> bytes:
    """An int8 flatbuffer with float32 input and output from a TFLite ``converter`` (not yet converted).

    Float I/O rather than uint8: uint8 I/O adds QUANTIZE ops XNNPACK does not take (the model would run
    partly on slow reference kernels), and a uint8 probability output ties at 1/256 steps.

    ``samples`` yields calibration inputs keyed by signature input name; ``image_input`` names the
    image input; activation ranges keep the central ``percentile`` % of the calibration activations
    (100: the converter's min/max); ops whose output keeps at least 1/``float_stride`` of the input's
    resolution run in float (0: only the input preprocessing).
    """
    import tensorflow as tf
    from tensorflow.lite.tools import flatbuffer_utils

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(FLOAT_OPS))
    with warnings.catch_warnings():  # the debugger opens its own TF interpreter, which TF calls deprecated
        warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated", category=UserWarning)
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_options=options)

    # The debugger's public `calibrated_model` (a float graph annotated with each tensor's calibrated
    # min/max) is what `get_nondebug_quantized_model` quantizes: the ranges are narrowed there, and the
    # float ops are kept float through the public `denylisted_nodes` option. TF has no public API to
    # set ranges otherwise (`mlir_quantize`, which takes them, is private).
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(debugger.calibrated_model))
    graph = model.subgraphs[0]
    inputs = {graph.tensors[i].name.decode(): i for i in graph.inputs}
    image_index = inputs[_graph_input_name(image_input, inputs)]
    float_outputs = _float_outputs(model, image_index, float_stride)
    if percentile < 100.0:
        # A tensor that stays float needs no range unless an int8 op reads it (then it is quantized on the
        # way in); the high-resolution float layers are most of the histogram work.
        float_names = set(float_outputs)
        read_by_int8 = {i for op in graph.operators if graph.tensors[op.outputs[0]].name.decode() not in float_names
                        for i in op.inputs}
        ranged = {i: (float(t.quantization.min[0]), float(t.quantization.max[0])) for i, t in enumerate(graph.tensors)
                  if t.quantization is not None and t.quantization.min is not None and len(t.quantization.min) == 1
                  and (t.name.decode() not in float_names or i in read_by_int8)}
        histograms = _RangeHistograms(debugger.calibrated_model, ranged)
        for sample in samples():
            histograms.add(sample)
        for index, (low, high) in histograms.clipped(percentile).items():
            graph.tensors[index].quantization.min = np.array([low], np.float32)
            graph.tensors[index].quantization.max = np.array([high], np.float32)
        debugger.calibrated_model = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    options.denylisted_nodes = float_outputs or None
    return debugger.get_nondebug_quantized_model()


class _ZeroPointSharingBuilder(flatbuffers.Builder):
    """A flatbuffer builder that writes each distinct int64 vector once and points every later copy at it.

    Tables may share a vector: readers never write to one. In the TFLite schema the int64 vectors are
    ``QuantizationParameters.zero_point`` and the dimension lists of StableHLO ops.
    """

    def __init__(self, initial_size: int) -> None:
        super().__init__(initial_size)
        self._written: dict[bytes, int] = {}

    def CreateNumpyVector(self, x: np.ndarray) -> int:  # noqa: N802 (the flatbuffers method it extends)
        if x.dtype != np.int64:
            return super().CreateNumpyVector(x)
        key = x.tobytes()
        if key not in self._written:
            self._written[key] = super().CreateNumpyVector(x)
        return self._written[key]


def share_zero_points(flatbuffer: bytes) -> bytes:
    """``flatbuffer`` (a .tflite without appended files) with each distinct zero-point vector stored once.

    Per-channel quantization stores an int64 zero point for every output channel of every weight and
    bias tensor, all 0 (symmetric weights): 8 bytes a channel, 9 % of an int8 MobileNetV2 α 0.35. The
    schema requires int64 and LiteRT as many zero points as scales (one shared zero point is refused),
    but a flatbuffer may point several tables at one vector, so tensors with the same zero points
    share it. Every field keeps its value: outputs are bit-identical.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    builder = _ZeroPointSharingBuilder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def float_depthwise_weights(flatbuffer: bytes) -> bytes:
    """A dynamic-range ``flatbuffer`` whose depthwise convolutions take float32 weights: their int8 values, dequantized.

    XNNPACK runs dynamic-range (hybrid) convolutions and dense layers, but has no hybrid depthwise
    kernel: each int8-weight DEPTHWISE_CONV_2D fell back to LiteRT's reference kernel, and the
    dynamic-range model ran slower than the float32 one. With float weights XNNPACK runs the whole
    graph; depthwise weights are 3-6 % of a MobileNetV2's, so the file grows by 4-5 %.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    users = Counter(tensor.buffer for graph in model.subgraphs for tensor in graph.tensors)
    for graph in model.subgraphs:
        for op in graph.operators:
            if flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) != "DEPTHWISE_CONV_2D":
                continue
            weights = graph.tensors[op.inputs[1]]
            if weights.type != schema.TensorType.INT8:
                continue
            quantization = weights.quantization
            scale_shape = [1] * len(weights.shape)
            scale_shape[quantization.quantizedDimension] = -1
            values = np.frombuffer(bytes(model.buffers[weights.buffer].data), np.int8).reshape(weights.shape)
            dequantized = values * np.asarray(quantization.scale, np.float32).reshape(scale_shape)
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(dequantized.astype("<f4").tobytes(), np.uint8)
            if users[weights.buffer] == 1:  # the int8 copy is no longer needed
                model.buffers[weights.buffer] = buffer
            else:  # another tensor still reads the int8 copy
                users[weights.buffer] -= 1
                weights.buffer = len(model.buffers)
                model.buffers.append(buffer)
            weights.type, weights.quantization = schema.TensorType.FLOAT32, None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))

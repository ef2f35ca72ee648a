import json

import numpy as np
import pytest

from mobiledx.models import build_classifier
from mobiledx.tflite.conversion import VARIANTS, TFLiteClassifier, convert, convert_variants, input_role
from mobiledx.tflite.ondevice import cpu_ops
from mobiledx.tflite.quantization import float_depthwise_weights


@pytest.fixture(scope="module")
def model_and_images():
    model = build_classifier(num_classes=3, image_size=32, alpha=0.35, weights="none", dense_units=16)
    images = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3)).astype(np.uint8)
    return model, images


@pytest.fixture(scope="module")
def flatbuffers(model_and_images):
    model, images = model_and_images
    return convert_variants(model, VARIANTS, representative=images.astype(np.float32))


@pytest.fixture(scope="module")
def int8_all_layers(model_and_images):
    """int8 with only the input normalisation in float (``float_stride=0``)."""
    model, images = model_and_images
    return convert(model, "int8", images.astype(np.float32), float_stride=0)


def test_float32_tflite_matches_keras(model_and_images, flatbuffers):
    model, images = model_and_images
    classifier = TFLiteClassifier(flatbuffers["float32"])
    assert classifier.image_size == 32 and classifier.custom_ops() == [] and not classifier.has_metadata
    expected = model.predict(images.astype(np.float32), verbose=0)
    assert np.abs(classifier.predict(images) - expected).max() <= 1e-4


def test_int8_tflite_is_an_int8_body_with_float_io_fully_on_the_cpu_accelerator(flatbuffers, model_and_images):
    images = model_and_images[1]
    classifier = TFLiteClassifier(flatbuffers["int8"])
    assert classifier.input["dtype"] == np.float32 and classifier.output["dtype"] == np.float32
    assert classifier.custom_ops() == [] and cpu_ops(flatbuffers["int8"]) == []
    probabilities = classifier.predict(images)
    assert probabilities.shape == (12, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)  # the softmax runs in float
    assert len(flatbuffers["int8"]) < 0.5 * len(flatbuffers["float32"])
    from ai_edge_litert.interpreter import Interpreter

    types = {d["dtype"] for d in Interpreter(model_content=flatbuffers["int8"]).get_tensor_details()}
    assert np.int8 in types  # weights and activations are int8 inside


def _ops_and_tensors(flatbuffer: bytes) -> tuple[list[dict], dict[int, dict]]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    return interpreter._get_ops_details(), {d["index"]: d for d in interpreter.get_tensor_details()}


def test_int8_keeps_the_input_normalisation_in_float(int8_all_layers):
    """MobileNet's x / 127.5 - 1 runs in float, so the first int8 step spans [-1, 1] / 255, not the
    [-1, 2] the converter gives the quantized MUL (1.5 pixel levels per step)."""
    ops, tensors = _ops_and_tensors(int8_all_layers)
    assert [op["op_name"] for op in ops[:4]] == ["MUL", "ADD", "QUANTIZE", "CONV_2D"]
    assert tensors[ops[0]["inputs"][0]]["name"] == "serving_default_image:0"
    assert all(tensors[op["outputs"][0]]["dtype"] == np.float32 for op in ops[:2])
    scale, _ = tensors[ops[2]["outputs"][0]]["quantization"]
    assert scale == pytest.approx(2 / 255, rel=0.02)


def test_int8_activation_ranges_follow_the_range_percentile(model_and_images, int8_all_layers):
    """A lower percentile clips more: every activation's int8 step is finer or equal, and some are finer."""
    model, images = model_and_images
    clipped = convert(model, "int8", images.astype(np.float32), range_percentile=99.0, float_stride=0)
    scales = {}
    for flatbuffer in (int8_all_layers, clipped):
        ops, tensors = _ops_and_tensors(flatbuffer)
        for op in ops:
            detail = tensors[op["outputs"][0]]
            if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD") and detail["dtype"] == np.int8:
                scales.setdefault(detail["name"], []).append(detail["quantization"][0])
    # (this untrained model's deep activations nearly vanish: ranges of ~1e-6, where the converter sets its own)
    ratios = np.array([clipped_scale / default for default, clipped_scale in scales.values() if default > 1e-6])
    assert len(ratios) > 10 and np.all(ratios <= 1.0 + 1e-6) and np.sum(ratios < 0.99) >= len(ratios) // 2
    assert TFLiteClassifier(clipped).predict(images).shape == (12, 3)


def _output_types_by_height(flatbuffer: bytes) -> dict[int, set]:
    """``{height: dtypes}`` of the 4-D outputs of the graph's compute ops (QUANTIZE/DEQUANTIZE left out)."""
    ops, tensors = _ops_and_tensors(flatbuffer)
    types: dict[int, set] = {}
    for op in ops:
        output = tensors[op["outputs"][0]]
        if len(output["shape"]) == 4 and op["op_name"] not in ("QUANTIZE", "DEQUANTIZE"):
            types.setdefault(int(output["shape"][1]), set()).add(np.dtype(output["dtype"]).name)
    return types


def test_int8_keeps_the_layers_at_high_resolution_in_float(flatbuffers, int8_all_layers):
    """At the default stride 8, every layer of the 32 px model whose output is 4x4 or larger runs in float
    (its weights too), the 2x2 and 1x1 layers in int8; at stride 0 they all run in int8."""
    by_height = _output_types_by_height(flatbuffers["int8"])
    assert sorted(by_height) == [1, 2, 4, 8, 16, 32]
    assert all(by_height[height] == {"float32"} for height in (4, 8, 16, 32))
    assert by_height[2] == {"int8"} and by_height[1] == {"int8"}
    all_layers = _output_types_by_height(int8_all_layers)
    assert all(all_layers[height] == {"int8"} for height in (1, 2, 4, 8, 16))
    weight_types = {weights.dtype for weights, _ in _weights(flatbuffers["int8"], "CONV_2D")}
    assert weight_types == {np.dtype(np.float32), np.dtype(np.int8)}
    assert cpu_ops(flatbuffers["int8"]) == [] and cpu_ops(int8_all_layers) == []


def test_int8_mobilenetv3_keeps_hard_swish_in_float_and_runs_wholly_on_the_cpu_accelerator():
    model = build_classifier(num_classes=3, image_size=32, backbone="mobilenetv3small", alpha=0.75, weights="none",
                             dense_units=8)
    images = np.random.default_rng(4).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    flatbuffer = convert(model, "int8", images)
    ops, tensors = _ops_and_tensors(flatbuffer)
    swish = [tensors[op["outputs"][0]]["dtype"] for op in ops if op["op_name"] == "HARD_SWISH"]
    assert swish and set(swish) == {np.float32}
    assert cpu_ops(flatbuffer) == []


@pytest.mark.parametrize("variant", ["float16", "dynamic_range"])
def test_weight_quantized_variants_keep_float_io_and_builtin_ops(model_and_images, flatbuffers, variant):
    model, images = model_and_images
    classifier = TFLiteClassifier(flatbuffers[variant])
    assert classifier.custom_ops() == []
    assert classifier.input["dtype"] == np.float32 and classifier.output["dtype"] == np.float32
    assert len(flatbuffers[variant]) < 0.75 * len(flatbuffers["float32"])
    expected = model.predict(images.astype(np.float32), verbose=0)
    assert np.abs(classifier.predict(images) - expected).max() <= 0.05


def _weights(flatbuffer: bytes, op_name: str) -> list[tuple[np.ndarray, dict]]:
    """Values and quantization parameters of the weights of every ``op_name`` op."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    return [(interpreter.get_tensor(op["inputs"][1]), details[op["inputs"][1]]["quantization_parameters"])
            for op in interpreter._get_ops_details() if op["op_name"] == op_name]


def test_dynamic_range_depthwise_weights_are_dequantized_so_xnnpack_runs_the_whole_graph(model_and_images,
                                                                                         flatbuffers):
    """XNNPACK has no hybrid depthwise kernel: the converter's int8 depthwise weights become float32,
    each exactly its int8 value times its channel's scale; every other weight stays int8."""
    import tensorflow as tf

    model, images = model_and_images
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    hybrid = converter.convert()
    assert set(cpu_ops(hybrid)) == {"DEPTHWISE_CONV_2D"}
    fixed = float_depthwise_weights(hybrid)
    assert cpu_ops(fixed) == [] and cpu_ops(flatbuffers["dynamic_range"]) == []

    pairs = list(zip(_weights(hybrid, "DEPTHWISE_CONV_2D"), _weights(fixed, "DEPTHWISE_CONV_2D"), strict=True))
    quantized = [(q, params, f) for (q, params), (f, _) in pairs if q.dtype == np.int8]
    assert quantized and all(f.dtype == np.float32 for _, (f, _) in pairs)
    for values, params, dequantized in quantized:
        np.testing.assert_array_equal(dequantized, values * params["scales"].astype(np.float32))
    for op_name in ("CONV_2D", "FULLY_CONNECTED"):
        kept = [(a, b) for (a, _), (b, _) in zip(_weights(hybrid, op_name), _weights(fixed, op_name), strict=True)]
        assert any(a.dtype == np.int8 for a, _ in kept)
        assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in kept)
    expected = TFLiteClassifier(hybrid).predict(images)
    assert np.abs(TFLiteClassifier(fixed).predict(images) - expected).max() <= 0.01
    assert len(fixed) < 0.75 * len(flatbuffers["float32"])


def test_dynamic_range_depthwise_weights_that_share_one_int8_buffer_each_keep_their_own_scale():
    """Weights w and 2w quantize to the same int8 bytes with different scales, and the converter stores
    identical read-only buffers once: each tensor must get its own float copy."""
    import keras
    import tensorflow as tf
    from tensorflow.lite.tools import flatbuffer_utils

    weights = np.random.default_rng(2).normal(size=(3, 3, 128, 1)).astype(np.float32)
    inputs = keras.Input((8, 8, 128))
    x = inputs
    for factor in (1.0, 2.0):
        x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False,
                                         depthwise_initializer=keras.initializers.Constant(factor * weights))(x)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, x))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    hybrid = converter.convert()
    graph = flatbuffer_utils.convert_bytearray_to_object(bytearray(hybrid)).subgraphs[0]
    assert len({graph.tensors[op.inputs[1]].buffer for op in graph.operators}) == 1  # one int8 buffer, two tensors

    fixed = float_depthwise_weights(hybrid)
    pairs = zip(_weights(hybrid, "DEPTHWISE_CONV_2D"), _weights(fixed, "DEPTHWISE_CONV_2D"), strict=True)
    for (values, params), (dequantized, _) in pairs:
        np.testing.assert_array_equal(dequantized, values * params["scales"].astype(np.float32))
    (first, _), (second, _) = _weights(fixed, "DEPTHWISE_CONV_2D")
    np.testing.assert_allclose(second, 2 * first, rtol=1e-6)
    assert cpu_ops(fixed) == []
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(fixed))  # the int8 copy is not left behind
    referenced = {tensor.buffer for tensor in model.subgraphs[0].tensors} | {entry.buffer for entry in model.metadata}
    assert all(i in referenced for i, buffer in enumerate(model.buffers) if buffer.data is not None)


def test_int8_without_representative_data_is_refused(model_and_images):
    with pytest.raises(ValueError, match="representative"):
        convert(model_and_images[0], "int8")
    with pytest.raises(ValueError, match="variant"):
        convert(model_and_images[0], "float8")


def test_metadata_given_to_an_image_only_model_is_refused(flatbuffers, model_and_images):
    classifier = TFLiteClassifier(flatbuffers["float32"])
    with pytest.raises(ValueError, match="metadata"):
        classifier.predict(model_and_images[1], metadata=np.zeros((12, 2), np.float32))


def test_input_roles_are_found_by_name():
    assert input_role("serving_default_metadata:0", 2) == "metadata"
    assert input_role("serving_default_image:0", 2) == "image"
    assert input_role("serving_default_inputs:0", 1) == "image"
    with pytest.raises(ValueError, match="neither"):
        input_role("serving_default_inputs:0", 2)


# --- a model with a second, metadata input ------------------------------------------------------

META = 5


@pytest.fixture(scope="module")
def two_input_model():
    """image → conv → GAP, metadata → Dense, concatenated → softmax; trained so predictions mean something.

    The label depends on both inputs (image brightness and the metadata's one-hot part), the model
    declares metadata first, and the metadata lives on a very different scale from the pixels, so
    inputs matched by position rather than by name would show.
    """
    import keras

    keras.utils.set_random_seed(0)
    image = keras.Input((32, 32, 3), name="image")
    metadata = keras.Input((META,), name="metadata")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(image)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    m = keras.layers.Dense(8, activation="relu")(metadata)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Concatenate()([x, m]))
    model = keras.Model([metadata, image], outputs)  # metadata first: positions must not matter

    rng = np.random.default_rng(1)
    n = 192
    brightness = rng.integers(0, 2, n)
    images = (rng.integers(0, 90, (n, 32, 32, 3)) + 150 * brightness[:, None, None, None]).astype(np.float32)
    site = rng.integers(0, 3, n)
    meta = np.zeros((n, META), np.float32)
    meta[np.arange(n), site] = 1.0
    meta[:, 3] = rng.uniform(0, 0.9, n)  # e.g. a normalised age
    meta[:, 4] = rng.integers(0, 2, n)  # e.g. sex
    labels = (brightness + site) % 3
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy")
    model.fit({"image": images, "metadata": meta}, labels, epochs=40, batch_size=32, verbose=0)
    return model, images, meta


def test_two_input_float32_matches_keras_by_input_name(two_input_model):
    model, images, meta = two_input_model
    classifier = TFLiteClassifier(convert(model, "float32"))
    assert classifier.has_metadata and classifier.custom_ops() == []
    assert list(classifier.inputs["metadata"]["shape"]) == [1, META]
    assert all(np.issubdtype(d["dtype"], np.number) for d in classifier.inputs.values())
    expected = model.predict({"image": images[:16], "metadata": meta[:16]}, verbose=0)
    assert np.abs(classifier.predict(images[:16], meta[:16]) - expected).max() <= 1e-4
    with pytest.raises(ValueError, match="metadata"):
        classifier.predict(images[:2])


def test_two_input_int8_calibrates_each_input_by_name(two_input_model):
    model, images, meta = two_input_model
    with pytest.raises(ValueError, match="metadata"):
        convert(model, "int8", representative=images)
    flatbuffer = convert(model, "int8", representative=(images[:96], meta[:96]), float_stride=0)
    classifier = TFLiteClassifier(flatbuffer)
    assert classifier.custom_ops() == [] and cpu_ops(flatbuffer) == []
    # each input is quantized with the range of its own calibration data: pixels 0-239, metadata 0-1
    # (float_stride=0: else the image's 30x30 convolution runs in float and the image is never quantized)
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    tensors = {d["index"]: d for d in interpreter.get_tensor_details()}
    scales = {tensors[op["inputs"][0]]["name"]: tensors[op["outputs"][0]]["quantization"][0]
              for op in interpreter._get_ops_details() if op["op_name"] == "QUANTIZE"}  # float input -> int8
    assert 0.8 < scales["serving_default_image:0"] < 1.2
    assert scales["serving_default_metadata:0"] < 0.01
    expected = model.predict({"image": images[96:], "metadata": meta[96:]}, verbose=0)
    probabilities = classifier.predict(images[96:], meta[96:])
    assert np.mean(probabilities.argmax(axis=1) == expected.argmax(axis=1)) >= 0.9


# --- the export stage's labels, end to end --------------------------------------------------------------------

# Not in alphabetical order (sorted: bcc, mel, nv; reversed: bcc, nv, mel): a stage that wrote the labels sorted,
# reversed or in any order other than the dataset's would show.
STAGE_CLASSES = ["mel", "nv", "bcc"]


def _colour_coded(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """32 px images in which class index k is bright in colour channel k (k = 0, 1, 2: red, green, blue)."""
    images = rng.integers(0, 40, (len(labels), 32, 32, 3)).astype(np.uint8)
    for k in range(3):
        images[labels == k, :, :, k] += 200
    return images


def _channel_model():
    """Output k = softmax of 10 x the mean of colour channel k: output index k scores class k's colour."""
    import keras

    image = keras.Input((32, 32, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1.0 / 255)(image))
    logits = keras.layers.Dense(3, kernel_initializer=keras.initializers.Constant(10 * np.eye(3)), name="logits")(x)
    return keras.Model(image, keras.layers.Softmax()(logits), name="channels")


@pytest.fixture
def exported_stage(tmp_path, monkeypatch):
    """``export_dataset`` on a 24-image in-memory dataset of STAGE_CLASSES, with a model whose output k is high for
    images of class k; MLflow, the registry, the latency benchmark and the model card are stubbed out."""
    from types import SimpleNamespace

    import pandas as pd

    import mobiledx.pipeline.export as stage
    from mobiledx.data.cache import IngestedDataset
    from mobiledx.params import DatasetParams, ExportParams, Params
    from mobiledx.paths import DatasetPaths
    from mobiledx.tflite import measurement

    monkeypatch.chdir(tmp_path)
    y = np.repeat(np.arange(3), 8)
    images = _colour_coded(y, np.random.default_rng(0))
    ids = [f"img{i:03d}" for i in range(len(y))]
    manifest = pd.DataFrame({"image_id": ids, "path": [f"arrays.npz#{i}" for i in range(len(y))],
                             "label": np.array(STAGE_CLASSES)[y], "group_id": ids, "license": "", "sex": "",
                             "site": "", "age": np.nan})
    assignment = manifest[["image_id", "group_id", "label"]].assign(
        split=np.where(np.arange(len(y)) % 4 == 0, "test", "train"))  # 2 test images per class
    data = IngestedDataset(name="tiny", info={"classes": STAGE_CLASSES, "image_size": 32, "n_images": len(y),
                                              "kind": "folder"},
                           manifest=manifest, images=images, assignment=assignment)
    paths = DatasetPaths("tiny")
    for path, value in ((paths.calibration, {"temperature": 1.0, "applied": False}),
                        (paths.run_record, {"run_id": "r"}), (paths.validation_metrics, {}),
                        (paths.metrics, {"accuracy": 1.0, "balanced_accuracy": 1.0}),
                        (paths.operating_point, {}), (paths.encoder, None)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    test = assignment[assignment["split"] == "test"]
    pd.DataFrame({"image_id": test["image_id"], "predicted": test["label"]}).to_csv(paths.predictions, index=False)
    paths.subgroups.write_text("attribute,value,n\n")
    monkeypatch.setattr(stage, "load_ingested", lambda _: data)
    monkeypatch.setattr(stage, "load_model", lambda _: _channel_model())
    monkeypatch.setattr(stage, "mlflow_runs", SimpleNamespace(recorded_environment=lambda run_id: {"python": "3"}))
    timing = {"median_ms": 1.0, "p95_ms": 1.0, "init_ms": 1.0, "fully_delegated": True}
    monkeypatch.setattr(measurement, "benchmark", lambda *args, **kwargs: timing)
    monkeypatch.setattr(stage, "build_model_card", lambda **kwargs: {})
    monkeypatch.setattr(stage, "render_markdown", lambda card: "")
    monkeypatch.setattr(stage, "_log", lambda *args: "model-id")
    monkeypatch.setattr(stage, "model_registry", SimpleNamespace(
        register_run=lambda run_id, dataset: SimpleNamespace(version=1, name=dataset)))
    monkeypatch.setattr(stage, "_print_summary", lambda *args: None)
    params = Params(datasets={"tiny": DatasetParams(name="tiny", kind="folder", path=tmp_path / "raw")},
                    export=ExportParams(representative_images=8, latency_runs=1))
    report = stage.export_dataset("tiny", params)
    return paths, report, images, y


def test_export_stage_labels_match_the_dataset_classes_the_metadata_and_the_output_indices(exported_stage):
    """labels.txt = the dataset's classes in order = the labels packed in every variant's metadata = the names
    MediaPipe gives each output index = the class that index scores."""
    import io
    import zipfile

    from mobiledx.tflite.ondevice import OnDeviceClassifier, read_metadata

    paths, report, images, y = exported_stage
    labels = paths.labels.read_text().splitlines()
    assert labels == STAGE_CLASSES
    for variant in VARIANTS:
        flatbuffer = paths.tflite(variant).read_bytes()
        metadata = read_metadata(flatbuffer)
        assert metadata["files"] == ["labels.txt"]
        output = metadata["subgraph_metadata"][0]["output_tensor_metadata"][0]
        assert output["description"].endswith(": " + ", ".join(labels))
        with zipfile.ZipFile(io.BytesIO(flatbuffer)) as packed:
            assert packed.read("labels.txt").decode().splitlines() == labels
        # the stage's own figures: every test image's top class is its label (class indices in the dataset's order)
        assert report[variant]["accuracy"] == 1.0 and report[variant]["agreement_with_keras"] == 1.0
        scores = TFLiteClassifier(flatbuffer).predict(images)
        assert [labels[i] for i in scores.argmax(axis=1)] == [STAGE_CLASSES[k] for k in y]
        with OnDeviceClassifier(flatbuffer, len(labels)) as classifier:
            for k in range(3):
                on_device, names = classifier.classify_frame(images[y == k][0])
                assert names == labels and names[int(on_device.argmax())] == STAGE_CLASSES[k]

"""The shipped .tflite files in the runtimes apps use: MediaPipe Tasks' ImageClassifier and LiteRT."""

import numpy as np
import pytest
from PIL import Image

from mobiledx.data.images import decode_image, device_resize
from mobiledx.data.licences import licence_text
from mobiledx.tflite.conversion import VARIANTS, TFLiteClassifier, convert, convert_variants
from mobiledx.tflite.ondevice import OnDeviceClassifier, benchmark, cpu_ops, read_metadata, write_metadata

LABELS = ["akiec", "bcc", "mel"]
DESCRIPTION = {"name": "mobiledx-test", "description": "a test model", "version": "0.1.0+run.abc",
               "author": "mobiledx tests", "license": "data: CC BY-NC-SA 4.0"}


@pytest.fixture(scope="module")
def model_and_images():
    """A small classifier whose outputs depend on the image (BatchNorm calibrated, not uniform)."""
    from mobiledx.models import build_classifier
    from mobiledx.training.batchnorm import recalibrate_batchnorm

    model = build_classifier(len(LABELS), 32, alpha=0.35, weights="none", dense_units=16, bn_momentum=0.9)
    images = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3)).astype(np.uint8)
    recalibrate_batchnorm(model, [images.astype(np.float32)])
    return model, images


@pytest.fixture(scope="module")
def converted(model_and_images):
    """Every variant as the converter writes it (no metadata)."""
    model, images = model_and_images
    return convert_variants(model, VARIANTS, representative=images)


@pytest.fixture(scope="module")
def shipped(converted):
    return {variant: write_metadata(flat, labels=LABELS, **DESCRIPTION) for variant, flat in converted.items()}


@pytest.mark.parametrize("variant", VARIANTS)
def test_mediapipe_loads_every_variant_with_class_names_and_litert_scores(shipped, model_and_images, variant):
    images = model_and_images[1]
    litert = TFLiteClassifier(shipped[variant]).predict(images[:8])
    assert litert.std(axis=0).max() > 1e-3  # outputs depend on the image: the comparison means something
    with OnDeviceClassifier(shipped[variant], len(LABELS)) as classifier:
        for image, expected in zip(images[:8], litert):
            scores, names = classifier.classify_frame(image)  # already 32x32: no resize happens
            assert names == LABELS
            np.testing.assert_allclose(scores, expected, atol=1e-6)


def test_metadata_carries_the_description_labels_and_normalisation(shipped):
    found = read_metadata(shipped["int8"])
    assert {key: found[key] for key in ("name", "description", "version", "author", "license")} == {
        **DESCRIPTION, "license": licence_text(DESCRIPTION["license"])}  # + the non-commercial limitation
    assert found["files"] == ["labels.txt"]
    subgraph = found["subgraph_metadata"][0]
    image = subgraph["input_tensor_metadata"][0]
    assert image["content"]["content_properties"]["color_space"] == "RGB"
    normalization = image["process_units"][0]["options"]
    assert normalization == {"mean": [0.0], "std": [1.0]}  # the model takes [0, 255] and normalises itself
    assert subgraph["output_tensor_metadata"][0]["associated_files"][0]["name"] == "labels.txt"
    # Only metadata parser 1.0.0 features (why the stand-in parser-version module may answer "1.0.0"):
    assert found["min_parser_version"] == "1.0.0"
    assert not set(subgraph) & {"input_process_units", "output_process_units", "input_tensor_groups",
                                "output_tensor_groups", "custom_metadata"}
    files = [f for tensor in subgraph["input_tensor_metadata"] + subgraph["output_tensor_metadata"]
             for f in tensor.get("associated_files", [])]
    assert all(f["type"] == "TENSOR_AXIS_LABELS" and "version" not in f for f in files)


@pytest.mark.parametrize("variant", VARIANTS)
def test_metadata_changes_no_output(model_and_images, converted, shipped, variant):
    images = model_and_images[1]
    plain = TFLiteClassifier(converted[variant]).predict(images[:8])
    assert np.array_equal(plain, TFLiteClassifier(shipped[variant]).predict(images[:8]))


def _zero_points(model: bytes) -> tuple[list[bytes], list[int]]:
    """Each quantized tensor's zero points (bytes) and the position of the vector holding them in ``model``."""
    from tensorflow.lite.python import schema_py_generated as schema

    graph = schema.Model.GetRootAsModel(model, 0).Subgraphs(0)
    values, positions = [], []
    for index in range(graph.TensorsLength()):
        quantization = graph.Tensors(index).Quantization()
        if quantization is not None and quantization.ZeroPointLength():
            values.append(quantization.ZeroPointAsNumpy().tobytes())
            positions.append(quantization._tab.Vector(quantization._tab.Offset(10)))  # field 3: zero_point
    return values, positions


@pytest.mark.parametrize("variant", ["int8", "dynamic_range"])
def test_each_distinct_zero_point_vector_is_stored_once(converted, shipped, variant):
    before, before_positions = _zero_points(converted[variant])
    after, positions = _zero_points(shipped[variant])
    assert after == before  # every tensor keeps its own zero points
    assert len(set(before_positions)) == len(before) > len(set(before))  # the converter writes duplicates
    assert len(set(positions)) == len(set(after))  # the shipped file stores each distinct vector once


def _pixel_echo_model(size: int) -> bytes:
    """A "classifier" whose scores are the input pixels it was given: MediaPipe's preprocessing made visible."""
    import keras

    inputs = keras.Input((size, size, 3), name="image")
    model = keras.Model(inputs, keras.layers.Reshape((size * size * 3,))(inputs))
    return write_metadata(convert(model, "float32"), labels=[f"p{i}" for i in range(size * size * 3)], **DESCRIPTION)


@pytest.mark.parametrize("frame", [(450, 600), (150, 200), (97, 61), (20, 30)])
def test_device_resize_is_exactly_what_mediapipe_feeds_the_model(frame):
    size = 16
    rng = np.random.default_rng(sum(frame))
    smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(frame[::-1]))
    frames = [rng.integers(0, 256, (*frame, 3), dtype=np.uint8), smooth]
    with OnDeviceClassifier(_pixel_echo_model(size), size * size * 3) as echo:
        for rgb in frames:
            seen = echo.classify_frame(rgb)[0].reshape(size, size, 3)
            assert np.array_equal(seen, device_resize(rgb, size))  # bit for bit
            pil = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR))
            assert not np.array_equal(seen, pil)  # what ingest did before: not what the phone sees


def test_ingest_decoding_matches_the_runtime_decoding_a_file(tmp_path):
    """From the original file (EXIF-rotated JPEG), MediaPipe's own decoder and ingest's agree up to JPEG decoders."""
    size = 16
    pixels = np.zeros((300, 400, 3), np.uint8)
    pixels[:, :200] = (220, 40, 40)
    pixels[:, 200:] = (40, 40, 220)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees: the red half on top
    path = tmp_path / "photo.jpg"
    Image.fromarray(pixels).save(path, quality=95, exif=exif.tobytes())
    with OnDeviceClassifier(_pixel_echo_model(size), size * size * 3) as echo:
        seen = echo.classify_file(path).reshape(size, size, 3)
    ours = decode_image(path.read_bytes(), size)
    assert seen[2, 8, 0] > 150 and seen[13, 8, 2] > 150  # orientation applied by the runtime too
    assert np.abs(seen.astype(int) - ours.astype(int)).max() <= 4  # JPEG decoders differ by a few levels


def test_litert_benchmark_reports_latency_and_full_delegation(shipped):
    for variant in ("float32", "int8"):
        result = benchmark(shipped[variant], threads=1, runs=5)
        assert result["median_ms"] > 0 and result["p95_ms"] >= result["median_ms"] and result["init_ms"] > 0
        assert result["fully_delegated"] is True and cpu_ops(shipped[variant]) == []
    assert benchmark(shipped["float32"], threads=2, runs=3)["median_ms"] > 0


def test_a_metadata_model_is_described_but_mediapipe_refuses_two_inputs():
    from mobiledx.models import build_classifier

    model = build_classifier(len(LABELS), 32, alpha=0.35, weights="none", dense_units=8, metadata_features=4,
                             metadata_units=4)
    flatbuffer = write_metadata(convert(model, "float32"), labels=LABELS, metadata_description="age, sex, site",
                                **DESCRIPTION)
    inputs = read_metadata(flatbuffer)["subgraph_metadata"][0]["input_tensor_metadata"]
    order = [d["name"] for d in TFLiteClassifier(flatbuffer).interpreter.get_input_details()]
    assert [entry["name"] for entry in inputs] == ["image" if "image" in name else "metadata" for name in order]
    assert next(entry for entry in inputs if entry["name"] == "metadata")["description"] == "age, sex, site"
    with pytest.raises(ValueError, match="single input"):
        OnDeviceClassifier(flatbuffer, len(LABELS))


def test_encoded_png_and_bmp_files_are_read_by_the_runtime(tmp_path, shipped):
    rgb = np.random.default_rng(3).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    with OnDeviceClassifier(shipped["float32"], len(LABELS)) as classifier:
        for fmt in ("PNG", "BMP"):
            path = tmp_path / f"image.{fmt.lower()}"
            Image.fromarray(rgb).save(path, format=fmt)
            expected = TFLiteClassifier(shipped["float32"]).predict(decode_image(path.read_bytes(), 32)[None])[0]
            np.testing.assert_allclose(classifier.classify_file(path), expected, atol=1e-6)


def test_the_same_model_gets_the_same_bytes_whatever_the_time(model_and_images, monkeypatch):
    import time

    flatbuffer = convert(model_and_images[0], "float32")
    first = write_metadata(flatbuffer, labels=LABELS, **DESCRIPTION)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 86_400 * 3)  # three days later
    second = write_metadata(flatbuffer, labels=LABELS, **DESCRIPTION)
    assert first == second
    assert read_metadata(second)["files"] == ["labels.txt"]
    with OnDeviceClassifier(second, len(LABELS)) as classifier:
        assert classifier.classify_frame(model_and_images[1][0])[1] == LABELS

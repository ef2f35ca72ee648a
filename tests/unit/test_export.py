import numpy as np
import pytest

from mobiledx.export import TFLiteClassifier, convert
from mobiledx.models import build_classifier


@pytest.fixture(scope="module")
def model_and_images():
    model = build_classifier(num_classes=3, image_size=32, alpha=0.35, weights="none", dense_units=16)
    images = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3)).astype(np.uint8)
    return model, images


def test_float32_tflite_matches_keras(model_and_images):
    model, images = model_and_images
    classifier = TFLiteClassifier(convert(model, "float32"))
    assert classifier.image_size == 32 and classifier.custom_ops() == []
    expected = model.predict(images.astype(np.float32), verbose=0)
    assert np.abs(classifier.predict(images) - expected).max() <= 1e-4


def test_int8_tflite_takes_uint8_pixels_and_returns_probabilities(model_and_images):
    model, images = model_and_images
    flatbuffer = convert(model, "int8", representative=images.astype(np.float32))
    classifier = TFLiteClassifier(flatbuffer)
    assert classifier.input["dtype"] == np.uint8 and classifier.custom_ops() == []
    probabilities = classifier.predict(images)
    assert probabilities.shape == (12, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=0.05)
    assert len(flatbuffer) < 0.5 * len(convert(model, "float32"))


def test_int8_without_representative_data_is_refused(model_and_images):
    with pytest.raises(ValueError, match="representative"):
        convert(model_and_images[0], "int8")
    with pytest.raises(ValueError, match="variant"):
        convert(model_and_images[0], "float8")

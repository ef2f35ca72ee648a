import numpy as np
import pytest

from mobiledx.models import WeightsUnavailableError, build_classifier, load_model


def test_classifier_shape_head_and_batchnorm_momentum():
    import keras

    model = build_classifier(num_classes=4, image_size=32, alpha=0.35, weights="none", bn_momentum=0.9)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 4)
    assert [layer.name for layer in model.layers[-4:]] == ["pool", "dense", "dropout", "probabilities"]
    assert model.get_layer("dense").units == 512 and model.get_layer("dropout").rate == 0.2
    momenta = {l.momentum for l in model.layers[2].layers if isinstance(l, keras.layers.BatchNormalization)}
    assert momenta == {0.9}
    probabilities = model.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_offline_imagenet_is_a_clear_error_naming_the_fix(monkeypatch):
    import keras

    def offline(*args, **kwargs):  # what Keras raises when storage.googleapis.com is unreachable
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: Name or service not known")

    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    with pytest.raises(WeightsUnavailableError, match=r"~/.keras/models/.*train.weights=none"):
        build_classifier(num_classes=2, image_size=96, alpha=0.35, weights="imagenet")


def test_missing_weights_file_is_refused(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="no-top weights file"):
        build_classifier(num_classes=2, image_size=32, weights=str(tmp_path / "missing.h5"))


def test_local_weights_file_is_loaded(tmp_path):
    import keras

    source = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None)
    source.save_weights(tmp_path / "backbone.weights.h5")
    model = build_classifier(num_classes=2, image_size=32, alpha=0.35, weights=str(tmp_path / "backbone.weights.h5"))
    assert np.array_equal(model.layers[2].get_weights()[0], source.get_weights()[0])


def test_saved_model_round_trips_in_safe_mode(tmp_path):
    model = build_classifier(num_classes=3, image_size=32, alpha=0.35, weights="none")
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    model.save(tmp_path / "model.keras")
    restored = load_model(tmp_path / "model.keras")
    assert np.allclose(model.predict(images, verbose=0), restored.predict(images, verbose=0), atol=1e-6)

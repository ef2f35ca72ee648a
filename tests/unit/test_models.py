import numpy as np
import pytest

from mobiledx.models import BACKBONES, WeightsUnavailableError, build_classifier
from mobiledx.models.inference import load_model


def test_classifier_shape_head_and_batchnorm_momentum():
    import keras

    model = build_classifier(num_classes=4, image_size=32, alpha=0.35, weights="none", bn_momentum=0.9)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 4)
    assert [layer.name for layer in model.layers[-4:]] == ["pool", "dense", "dropout", "probabilities"]
    assert model.get_layer("dense").units == 512 and model.get_layer("dropout").rate == 0.2
    momenta = {layer.momentum for layer in model.layers[2].layers if isinstance(layer, keras.layers.BatchNormalization)}
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


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_and_takes_a_training_step(name):
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)  # unseeded, a deep ReLU stack (VGG19) can start with every unit dead
    size = max(32, BACKBONES[name].min_size)
    model = build_classifier(num_classes=3, image_size=size, backbone=name, alpha=0.35, weights="none", dense_units=8)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="categorical_crossentropy", run_eagerly=True)
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(images, np.eye(3, dtype=np.float32)[[0, 2]])
    assert np.isfinite(loss) and model.output_shape == (None, 3)
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights())]
    assert changed[-1] and sum(changed) > 2  # the head and the backbone both learned


@pytest.mark.parametrize("backbone, module", [
    ("mobilenetv2", "mobilenet_v2"), ("resnet50", "resnet50"), ("densenet201", "densenet"), ("vgg19", "vgg19"),
])
def test_built_in_preprocessing_equals_keras_preprocess_input(backbone, module):
    import keras

    from mobiledx.models.backbones import backbone_spec, preprocessing_layers

    pixels = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    x = pixels
    for layer in preprocessing_layers(backbone_spec(backbone).preprocessing):
        x = layer(x)
    expected = getattr(keras.applications, module).preprocess_input(pixels.copy())
    assert np.abs(np.asarray(x) - np.asarray(expected)).max() <= 1e-3


def test_caffe_channel_order_is_exact_and_runs_on_the_cpu_accelerator():
    """RGB → BGR as a permutation convolution: the same pixels, and XNNPACK takes it (it has no REVERSE_V2)."""
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from mobiledx.models.layers import ChannelReverse
    from mobiledx.tflite.conversion import convert
    from mobiledx.tflite.ondevice import cpu_ops

    image = keras.Input((8, 8, 3), name="image")
    model = keras.Model(image, ChannelReverse(name="rgb_to_bgr")(image))
    pixels = np.random.default_rng(3).uniform(0, 255, (1, 8, 8, 3)).astype(np.float32)
    assert np.array_equal(np.asarray(model(pixels)), pixels[..., ::-1])
    flatbuffer = convert(model, "float32")
    assert cpu_ops(flatbuffer) == []
    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels)
    interpreter.invoke()
    assert np.array_equal(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]), pixels[..., ::-1])


def test_sigmoid_head_outputs_a_probability_pair_and_is_binary_only():
    import keras

    model = build_classifier(num_classes=2, image_size=32, alpha=0.35, weights="none", head="sigmoid", dense_units=8)
    assert model.get_layer("positive_logit").units == 1
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (3, 2) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    logits = keras.Model(model.inputs, model.get_layer("positive_logit").output).predict(images, verbose=0)
    assert np.allclose(probabilities[:, 1], 1 / (1 + np.exp(-logits[:, 0])), atol=1e-6)  # p = sigmoid(logit)
    with pytest.raises(ValueError, match="binary"):
        build_classifier(num_classes=3, image_size=32, weights="none", head="sigmoid")


def test_soft_attention_sits_at_block_14_of_mobilenetv2_and_metadata_joins_before_the_classifier():
    from mobiledx.models.attention import SoftAttention

    model = build_classifier(num_classes=4, image_size=64, alpha=0.35, weights="none", head="soft_attention",
                             dense_units=0, metadata_features=5, metadata_units=8)
    attention = [layer for layer in model.layers if isinstance(layer, SoftAttention)]
    backbone = model.get_layer("backbone")
    assert len(attention) == 1 and backbone.output.shape == backbone.get_layer("block_14_depthwise_relu").output.shape
    assert [t.name for t in model.inputs] == ["image", "metadata"]
    assert model.get_layer("image_and_metadata").input[1].shape == (None, 8)


def test_attention_metadata_model_exports_builtin_numeric_tflite_matching_keras():
    from mobiledx.tflite.conversion import TFLiteClassifier, convert

    model = build_classifier(num_classes=3, image_size=64, alpha=0.35, weights="none", head="soft_attention",
                             dense_units=0, metadata_features=4, metadata_units=8, bn_momentum=0.9)
    rng = np.random.default_rng(2)
    images = rng.uniform(0, 255, (6, 64, 64, 3)).astype(np.float32)
    metadata = rng.normal(size=(6, 4)).astype(np.float32)
    classifier = TFLiteClassifier(convert(model, "float32"))
    details = classifier.interpreter.get_input_details()
    assert {d["dtype"] for d in details} == {np.float32} and len(details) == 2  # numbers only, no strings
    assert classifier.custom_ops() == []
    expected = model.predict({"image": images, "metadata": metadata}, verbose=0)
    assert np.abs(classifier.predict(images, metadata) - expected).max() <= 1e-4


def test_paper_003_models_have_no_pretrained_weights():
    with pytest.raises(WeightsUnavailableError, match="train.weights=none"):
        build_classifier(num_classes=2, image_size=32, backbone="cnn15", weights="imagenet")
    with pytest.raises(ValueError, match="unknown"):
        build_classifier(num_classes=2, image_size=32, backbone="alexnet", weights="none")

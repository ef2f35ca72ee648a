"""Soft-Attention (paper 004, Conv2D form): NumPy reference, serialization, TFLite export, training."""

import keras
import numpy as np
import pytest

from mobiledx.models.attention import SoftAttention, soft_attention_block
from mobiledx.tflite.conversion import TFLiteClassifier, convert

HEADS, SHAPE = 4, (7, 7, 8)


def reference(t, kernel, bias, gamma, concatenate=False):
    """Soft-Attention in plain NumPy: 3×3 zero-padded conv, ReLU, softmax over positions, sum, scale."""
    batch, height, width, _ = t.shape
    padded = np.pad(t.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    logits = np.zeros((batch, height, width, kernel.shape[-1]))
    for di in range(3):
        for dj in range(3):
            logits += np.einsum("bhwc,ck->bhwk", padded[:, di : di + height, dj : dj + width], kernel[di, dj])
    logits = np.maximum(logits + bias, 0.0)
    flat = logits.reshape(batch, height * width, -1)
    exps = np.exp(flat - flat.max(axis=1, keepdims=True))
    alpha = (exps / exps.sum(axis=1, keepdims=True)).sum(axis=-1).reshape(batch, height, width, 1)
    out = gamma * alpha * t
    return (np.concatenate([out, t], axis=-1) if concatenate else out), alpha


def make_layer(concatenate=False, seed=0, gamma=1.0):
    rng = np.random.default_rng(seed)
    layer = SoftAttention(heads=HEADS, concatenate=concatenate)
    layer.build((None, *SHAPE))
    kernel = rng.normal(0.0, 0.5, (3, 3, SHAPE[-1], HEADS)).astype(np.float32)
    bias = rng.normal(0.0, 0.5, HEADS).astype(np.float32)
    layer.conv.set_weights([kernel, bias])
    layer.gamma.assign(gamma)
    return layer, kernel, bias


@pytest.fixture(scope="module")
def features():
    return np.random.default_rng(1).normal(0.0, 1.0, (3, *SHAPE)).astype(np.float32)


@pytest.mark.parametrize("gamma", [1.0, 0.37])
def test_layer_matches_numpy_reference(features, gamma):
    layer, kernel, bias = make_layer(gamma=gamma)
    out, alpha = layer(features, return_attention=True)
    expected, expected_alpha = reference(features, kernel, bias, gamma)
    assert out.shape == features.shape and alpha.shape == (3, 7, 7, 1)
    assert np.abs(np.asarray(out) - expected).max() <= 1e-5
    assert np.abs(np.asarray(alpha) - expected_alpha).max() <= 1e-5
    # α of each image sums to the number of heads, and is not trivially uniform.
    np.testing.assert_allclose(np.asarray(alpha).sum(axis=(1, 2, 3)), HEADS, rtol=1e-5)
    assert np.asarray(alpha).std() > 0.05
    np.testing.assert_allclose(np.asarray(layer(features)), np.asarray(out), atol=0)


def test_concatenate_and_functional_attention_output(features):
    layer, kernel, bias = make_layer(concatenate=True, gamma=2.5)
    inputs = keras.Input(SHAPE)
    out, alpha = layer(inputs, return_attention=True)
    assert tuple(out.shape) == (None, 7, 7, 16) and tuple(alpha.shape) == (None, 7, 7, 1)
    got_out, got_alpha = keras.Model(inputs, [out, alpha]).predict(features, verbose=0)
    expected, expected_alpha = reference(features, kernel, bias, 2.5, concatenate=True)
    assert np.abs(got_out - expected).max() <= 1e-5
    assert np.abs(got_alpha - expected_alpha).max() <= 1e-5


def test_config_round_trip_and_safe_mode_keras_file(tmp_path, features):
    layer, _, _ = make_layer(concatenate=True, gamma=0.6)
    config = layer.get_config()
    assert (config["heads"], config["kernel_size"], config["concatenate"]) == (HEADS, 3, True)
    clone = SoftAttention.from_config(config)
    assert clone.get_config() == config

    inputs = keras.Input(SHAPE)
    model = keras.Model(inputs, layer(inputs))
    path = tmp_path / "attention.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    restored = next(lyr for lyr in loaded.layers if isinstance(lyr, SoftAttention))
    assert float(restored.gamma.numpy()) == pytest.approx(0.6)
    np.testing.assert_array_equal(loaded.predict(features, verbose=0), model.predict(features, verbose=0))


@pytest.fixture(scope="module")
def image_model():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=4, activation="relu", name="stem")(x)  # 8×8×8 feature map
    x = soft_attention_block(x, heads=HEADS, dropout=0.5)
    outputs = keras.layers.Dense(3, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(4).integers(0, 256, (10, 32, 32, 3)).astype(np.uint8)
    return model, images


def test_block_shapes(image_model):
    model, _ = image_model
    # 8×8 → 2×2 max-pool (same) → 4×4, features (8) + attention output (8) channels.
    assert tuple(model.get_layer("soft_attention_flatten").output.shape) == (None, 4 * 4 * 16)


def test_float32_tflite_matches_keras_with_builtin_ops(image_model):
    model, images = image_model
    classifier = TFLiteClassifier(convert(model, "float32"))
    assert classifier.custom_ops() == []
    expected = model.predict(images.astype(np.float32), verbose=0)
    assert expected.std(axis=0).max() > 1e-3  # outputs differ between images: the comparison means something
    assert np.abs(classifier.predict(images) - expected).max() <= 1e-4


def test_int8_tflite_converts_with_builtin_ops(image_model):
    model, images = image_model
    from mobiledx.tflite.ondevice import cpu_ops

    flatbuffer = convert(model, "int8", representative=images.astype(np.float32))
    classifier = TFLiteClassifier(flatbuffer)
    assert classifier.input["dtype"] == np.float32 and classifier.custom_ops() == []
    assert cpu_ops(flatbuffer) == []  # attention's softmax included: the whole graph runs on LiteRT's accelerator
    probabilities = classifier.predict(images)
    assert probabilities.shape == (10, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=0.05)
    expected = model.predict(images.astype(np.float32), verbose=0)
    assert np.abs(probabilities - expected).max() <= 0.1  # measured 5e-3 on this toy model


def test_gamma_is_trainable(features):
    layer, _, _ = make_layer()
    assert any(w is layer.gamma for w in layer.trainable_weights)
    inputs = keras.Input(SHAPE)
    outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(layer(inputs)))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.train_on_batch(features, np.full((3, 1), 5.0, np.float32))
    assert abs(float(layer.gamma.numpy()) - 1.0) > 1e-4

"""BatchNorm recalibration in mini-batches: exact pooled statistics, memory of one batch."""

import numpy as np
import pytest

from mobiledx.training.batchnorm import calibration_batches, recalibrate_batchnorm


def _model(layers: int, momentum: float = 0.99):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for _ in range(layers):
        x = keras.layers.Conv2D(4, 3, padding="same")(x)
        x = keras.layers.BatchNormalization(momentum=momentum)(x)
        x = keras.layers.ReLU()(x)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def _statistics(model) -> list[np.ndarray]:
    import keras

    return [np.concatenate([np.asarray(layer.moving_mean), np.asarray(layer.moving_variance)])
            for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def _single_pass(model, pixels) -> list[np.ndarray]:
    """What the old calibration did: ONE training-mode pass over the whole sample with momentum 0."""
    import keras

    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.momentum = 0.0
    model(pixels, training=True)
    for layer in layers:
        layer.momentum = 0.99
    return _statistics(model)


@pytest.mark.parametrize("batch_size", [4, 7, 50])
def test_mini_batch_statistics_equal_one_pass_over_the_whole_sample(batch_size):
    pixels = np.random.default_rng(0).normal(3.0, 2.0, (50, 8, 8, 3)).astype(np.float32)
    model = _model(layers=1)
    expected = _single_pass(model, pixels)
    model = _model(layers=1)
    batches = [pixels[i:i + batch_size] for i in range(0, 50, batch_size)]  # 50 = 12x4+2 / 7x7+1: unequal batches
    recalibrate_batchnorm(model, batches)
    for found, wanted in zip(_statistics(model), expected):
        np.testing.assert_allclose(found, wanted, rtol=1e-5, atol=1e-5)
    assert [layer.momentum for layer in model.layers if hasattr(layer, "moving_mean")] == [0.99]  # restored


def test_deeper_layers_pool_per_batch_statistics_and_match_one_pass_for_one_batch():
    pixels = np.random.default_rng(1).normal(0.0, 1.0, (40, 8, 8, 3)).astype(np.float32)
    expected = _single_pass(_model(layers=3), pixels)
    one_batch = _model(layers=3)
    recalibrate_batchnorm(one_batch, [pixels])
    for found, wanted in zip(_statistics(one_batch), expected):
        np.testing.assert_allclose(found, wanted, rtol=1e-5, atol=1e-5)
    mini = _model(layers=3)
    recalibrate_batchnorm(mini, [pixels[i:i + 8] for i in range(0, 40, 8)])
    first, *deeper = _statistics(mini)
    np.testing.assert_allclose(first, expected[0], rtol=1e-5, atol=1e-5)  # its input passes no BatchNorm
    for found, wanted in zip(deeper, expected[1:]):  # normalised per batch upstream: close, not equal
        np.testing.assert_allclose(found, wanted, rtol=0.2, atol=0.05)


def test_calibration_reads_the_sample_in_batches_of_at_most_batch_size():
    reads = []

    class Recording:
        def __getitem__(self, rows):
            reads.append(len(rows))
            return np.zeros((len(rows), 8, 8, 3), np.uint8)

    batches = calibration_batches(Recording(), np.arange(100, 200), None, count=50, batch_size=16, seed=3)
    assert [len(b) for b in batches()] == [16, 16, 16, 2] and reads == [16, 16, 16, 2]
    with_metadata = calibration_batches(Recording(), np.arange(10), np.eye(10, dtype=np.float32), 4, 3, seed=3)
    first = next(iter(with_metadata()))
    assert set(first) == {"image", "metadata"} and first["metadata"].shape == (3, 10)
    assert list(calibration_batches(Recording(), np.arange(10), None, count=0, batch_size=4, seed=3)()) == []

import numpy as np
import pandas as pd
import pytest

from mobiledx.training import TrainConfig, fit, make_dataset, one_hot, predict_probabilities

CLASSES = ["red", "blue"]


def colour_task(n: int = 96, size: int = 32, seed: int = 0):
    """Noisy red-ish vs blue-ish squares: trivially learnable, so eval-mode accuracy must be high."""
    rng = np.random.default_rng(seed)
    labels = np.array(["red", "blue"] * (n // 2))
    images = rng.integers(0, 80, (n, size, size, 3)).astype(np.uint8)
    images[labels == "red", ..., 0] += 150
    images[labels == "blue", ..., 2] += 150
    return images, pd.Series(labels)


def config(**overrides) -> TrainConfig:
    values = dict(lr=1e-3, seed=1, epochs=4, batch_size=16, alpha=0.35, weights="none", bn_momentum=0.9,
                  dense_units=32, dropout=0.0, augment=False, patience=10, monitor="val_loss",
                  bn_calibration_images=64)
    return TrainConfig(**{**values, **overrides})


def test_dataset_gathers_the_requested_rows_in_order():
    images = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((5, 4, 4, 3), np.uint8)
    rows = np.array([3, 1, 4])
    batches = list(make_dataset(images, rows, np.eye(3, dtype=np.float32), np.ones(3), batch_size=2))
    pixels = np.concatenate([b[0].numpy() for b in batches])
    assert pixels.dtype == np.float32 and list(pixels[:, 0, 0, 0]) == [3.0, 1.0, 4.0]
    assert len(batches[0]) == 3  # (pixels, targets, sample weights)


def test_shuffle_is_seeded():
    images = np.zeros((20, 2, 2, 3), np.uint8)
    targets = np.arange(20, dtype=np.float32)[:, None]

    def order(seed):
        data = make_dataset(images, np.arange(20), targets, None, batch_size=20, shuffle_seed=seed)
        return next(iter(data))[1].numpy().ravel().tolist()

    assert order(3) == order(3) and order(3) != order(4) and sorted(order(3)) == list(range(20))


def test_one_hot_refuses_unknown_labels():
    with pytest.raises(ValueError, match="green"):
        one_hot(pd.Series(["red", "green"]), CLASSES)


def test_from_scratch_eval_mode_accuracy_tracks_training():
    """The BatchNorm trap: moving statistics lag in a short from-scratch run and inference collapses
    to one class (measured: 0.47 accuracy here without calibration); calibration must prevent it."""
    images, labels = colour_task()
    rows = np.arange(len(images))
    cfg = config(epochs=6, batch_size=8)
    model, history = fit(cfg, images, CLASSES, rows[:64], labels[:64], np.ones(64), rows[64:], labels[64:])
    assert list(history["epoch"]) == [1, 2, 3, 4, 5, 6]
    predicted = predict_probabilities(model, images, rows[64:]).argmax(axis=1)
    accuracy = np.mean(np.array(CLASSES)[predicted] == labels[64:].to_numpy())
    best = history.loc[history["val_loss"].idxmin()]
    assert accuracy >= 0.7  # chance is 0.5; the uncalibrated model scores 0.47
    assert accuracy == pytest.approx(best["val_accuracy"], abs=1e-6)  # validation saw the calibrated model
    assert accuracy >= best["accuracy"] - 0.15  # inference mode tracks training mode


def test_same_seed_same_model():
    images, labels = colour_task(48)
    rows = np.arange(48)
    cfg = config(epochs=1, augment=True)
    first, _ = fit(cfg, images, CLASSES, rows[:32], labels[:32], np.ones(32), rows[32:], labels[32:])
    second, _ = fit(cfg, images, CLASSES, rows[:32], labels[:32], np.ones(32), rows[32:], labels[32:])
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights()))

"""Training: tf.data input with online augmentation, Adam, early stopping, per-epoch MLflow logging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class TrainConfig:
    """The ``train`` params (plus top-level ``lr`` and ``seed``)."""

    lr: float
    seed: int
    epochs: int
    batch_size: int
    alpha: float
    weights: str
    bn_momentum: float | None
    dense_units: int
    dropout: float
    augment: bool
    patience: int
    monitor: str
    bn_calibration_images: int

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "TrainConfig":
        train = params["train"]
        return cls(
            lr=float(params["lr"]),
            seed=int(params["seed"]),
            epochs=int(train["epochs"]),
            batch_size=int(train["batch_size"]),
            alpha=float(train["alpha"]),
            weights=str(train["weights"]),
            bn_momentum=None if train.get("bn_momentum") is None else float(train["bn_momentum"]),
            dense_units=int(train["dense_units"]),
            dropout=float(train["dropout"]),
            augment=bool(train["augment"]),
            patience=int(train["patience"]),
            monitor=str(train["monitor"]),
            bn_calibration_images=int(train["bn_calibration_images"]),
        )


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic (same params + data = same model)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def augmentation_layers(seed: int):
    """Online augmentation as Keras preprocessing layers, run inside tf.data (flips, rotation, zoom, shift)."""
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
            keras.layers.RandomRotation(0.1, fill_mode="reflect", seed=seed + 1),
            keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=seed + 2),
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed + 3),
        ],
        name="augmentation",
    )


def make_dataset(
    images: np.ndarray,
    rows: np.ndarray,
    targets: np.ndarray,
    sample_weights: np.ndarray | None,
    batch_size: int,
    shuffle_seed: int | None = None,
    augmenter=None,
):
    """A batched ``tf.data`` pipeline over ``images[rows]``: gather → (augment) → float32, prefetched.

    Only row indices go through the graph; pixels are gathered from the in-memory array per batch,
    so datasets far larger than a graph constant work.
    """
    import tensorflow as tf

    size = images.shape[1:]
    columns = [rows.astype(np.int64), targets.astype(np.float32)]
    if sample_weights is not None:
        columns.append(sample_weights.astype(np.float32))
    dataset = tf.data.Dataset.from_tensor_slices(tuple(columns))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(rows), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)

    def gather(batch_rows):
        pixels = tf.numpy_function(lambda r: images[r], [batch_rows], tf.uint8, stateful=False)
        pixels = tf.cast(tf.ensure_shape(pixels, (None, *size)), tf.float32)
        if augmenter is not None:
            pixels = augmenter(pixels, training=True)
        return pixels

    dataset = dataset.map(lambda r, *rest: (gather(r), *rest), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def one_hot(labels: pd.Series, classes: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {classes}")
    return np.eye(len(classes), dtype=np.float32)[[index[label] for label in labels]]


def fit(
    config: TrainConfig,
    images: np.ndarray,
    classes: list[str],
    train_rows: np.ndarray,
    train_labels: pd.Series,
    train_weights: np.ndarray,
    val_rows: np.ndarray,
    val_labels: pd.Series,
    callbacks: list | None = None,
):
    """Build and train the classifier; returns ``(model, history DataFrame)`` (best weights restored)."""
    import keras

    from mobiledx.models import build_classifier

    make_deterministic(config.seed)
    model = build_classifier(
        num_classes=len(classes),
        image_size=images.shape[1],
        alpha=config.alpha,
        weights=config.weights,
        dense_units=config.dense_units,
        dropout=config.dropout,
        bn_momentum=config.bn_momentum,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.lr),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    augmenter = augmentation_layers(config.seed) if config.augment else None
    train_data = make_dataset(
        images, train_rows, one_hot(train_labels, classes), train_weights, config.batch_size,
        shuffle_seed=config.seed, augmenter=augmenter,
    )
    val_data = make_dataset(images, val_rows, one_hot(val_labels, classes), None, config.batch_size)
    early_stopping = keras.callbacks.EarlyStopping(
        monitor=config.monitor, patience=config.patience, restore_best_weights=True, verbose=1
    )
    calibration_rows = np.random.default_rng(config.seed).permutation(train_rows)[: config.bn_calibration_images]
    calibration = BatchNormCalibration(images[np.sort(calibration_rows)])
    history = model.fit(
        train_data,
        validation_data=val_data,
        epochs=config.epochs,
        callbacks=[
            calibration,
            early_stopping,
            *(callbacks or []),
        ],
        shuffle=False,  # the tf.data pipeline already shuffles, seeded
        verbose=2,
    )
    frame = pd.DataFrame(history.history)
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    return model, frame


def _batchnorm_layers(layer) -> list:
    import keras

    found = [layer] if isinstance(layer, keras.layers.BatchNormalization) else []
    for child in getattr(layer, "layers", []):
        found.extend(_batchnorm_layers(child))
    return found


def recalibrate_batchnorm(model, pixels: np.ndarray) -> None:
    """Set every BatchNorm layer's moving statistics to those of ``pixels`` at the current weights.

    Moving averages lag behind weights that change fast, as in a short from-scratch training, and
    inference-mode outputs then collapse towards one class. One forward pass over a calibration
    sample with momentum 0 makes inference-mode statistics match the final weights.
    """
    layers = _batchnorm_layers(model)
    momenta = [layer.momentum for layer in layers]
    try:
        for layer in layers:
            layer.momentum = 0.0
        model(pixels.astype(np.float32), training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum


def BatchNormCalibration(pixels: np.ndarray):
    """Keras callback: recalibrate BatchNorm statistics before every validation pass.

    Validation metrics (and so early stopping and the restored best weights) then reflect the
    model as it will run in inference mode. Does nothing when ``pixels`` is empty.
    """
    import keras

    class _Calibration(keras.callbacks.Callback):
        def on_test_begin(self, logs=None) -> None:
            if len(pixels):
                recalibrate_batchnorm(self.model, pixels)

    return _Calibration()


def best_epoch(history: pd.DataFrame, monitor: str) -> pd.Series:
    """The history row early stopping restored: lowest ``monitor`` for losses, highest otherwise."""
    values = history[monitor]
    return history.loc[values.idxmin() if "loss" in monitor else values.idxmax()]


def predict_probabilities(model, images: np.ndarray, rows: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Inference-mode class probabilities for ``images[rows]``."""
    data = make_dataset(images, rows, np.zeros((len(rows), 1), np.float32), None, batch_size)
    return model.predict(data.map(lambda x, _: x), verbose=0)

"""Training: tf.data input with online augmentation, Adam, early stopping, per-epoch MLflow logging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class TrainConfig:
    """The ``train`` params (plus top-level ``lr`` and ``seed``); see params.yaml for their meaning."""

    lr: float
    seed: int
    epochs: int
    batch_size: int
    alpha: float
    weights: str
    bn_momentum: float | None
    dense_units: int
    dropout: float
    patience: int
    monitor: str
    bn_calibration_images: int
    backbone: str = "mobilenetv2"
    head: str = "dense"
    metadata: bool = False
    metadata_units: int = 64
    attention_heads: int = 16
    augmentation: str = "mobiledx"
    loss: str = "crossentropy"
    focal_gamma: float = 2.0
    adam_epsilon: float = 1e-7
    schedule: str = "constant"
    plateau_patience: int = 3
    restart_epochs: int = 10
    freeze_epochs: int = 0
    unfreeze_layers: int = 0
    fine_tune_lr_factor: float = 0.1

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "TrainConfig":
        train = dict(params["train"])
        unknown = set(train) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown train params {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        casts = {name: field.type for name, field in cls.__dataclass_fields__.items()}
        values = {}
        for name, value in train.items():
            kind = casts[name]
            if value is None or kind in ("str", "float | None"):
                values[name] = None if value is None else (str(value) if kind == "str" else float(value))
            else:
                values[name] = {"int": int, "float": float, "bool": bool}[kind](value)
        return cls(lr=float(params["lr"]), seed=int(params["seed"]), **values)


LOSSES = ("crossentropy", "focal")


def make_loss(name: str, focal_gamma: float = 2.0):
    """Categorical cross-entropy (binary cross-entropy for the sigmoid head's ``[1-p, p]`` output) or
    focal loss; class weighting comes in as sample weights from the rebalance stage."""
    import keras

    if name not in LOSSES:
        raise ValueError(f"train.loss must be one of {LOSSES}, got {name!r}")
    if name == "focal":
        return keras.losses.CategoricalFocalCrossentropy(alpha=1.0, gamma=focal_gamma)
    return keras.losses.CategoricalCrossentropy()


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic (same params + data = same model)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def make_dataset(
    images: np.ndarray,
    rows: np.ndarray,
    targets: np.ndarray,
    sample_weights: np.ndarray | None,
    batch_size: int,
    shuffle_seed: int | None = None,
    augmenter=None,
    metadata: np.ndarray | None = None,
):
    """A batched ``tf.data`` pipeline over ``images[rows]``: gather → (augment) → float32, prefetched.

    Only row indices go through the graph; pixels are gathered from the in-memory array per batch,
    so datasets far larger than a graph constant work. With ``metadata`` (one row per entry of
    ``rows``) the inputs are ``{"image": pixels, "metadata": features}``.
    """
    import tensorflow as tf

    size = images.shape[1:]
    columns = [rows.astype(np.int64), targets.astype(np.float32)]
    if sample_weights is not None:
        columns.append(sample_weights.astype(np.float32))
    if metadata is not None:
        columns.append(metadata.astype(np.float32))
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

    def to_inputs(batch_rows, *rest):
        if metadata is None:
            return (gather(batch_rows), *rest)
        *rest, features = rest
        return ({"image": gather(batch_rows), "metadata": features}, *rest)

    dataset = dataset.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def one_hot(labels: pd.Series, classes: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {classes}")
    return np.eye(len(classes), dtype=np.float32)[[index[label] for label in labels]]


def build_model(config: TrainConfig, num_classes: int, image_size: int, metadata_features: int = 0):
    """The classifier the ``train`` params describe."""
    from mobiledx.models import build_classifier

    return build_classifier(
        num_classes=num_classes, image_size=image_size, backbone=config.backbone, alpha=config.alpha,
        weights=config.weights, head=config.head, dense_units=config.dense_units, dropout=config.dropout,
        bn_momentum=config.bn_momentum, metadata_features=metadata_features, metadata_units=config.metadata_units,
        attention_heads=config.attention_heads,
    )


def set_backbone_trainable(model, trainable: bool, top_layers: int = 0) -> None:
    """Freeze the backbone, or unfreeze its top ``top_layers`` layers (0 = all). BatchNorm layers stay
    frozen while fine-tuning a partly frozen backbone, as Keras recommends for transfer learning."""
    import keras

    from mobiledx.models import backbone_layer

    backbone = backbone_layer(model)
    if not trainable:
        backbone.trainable = False
        return
    backbone.trainable = True
    layers = backbone.layers
    boundary = len(layers) - top_layers if 0 < top_layers < len(layers) else 0
    for position, layer in enumerate(layers):
        fine_tuned = position >= boundary
        layer.trainable = fine_tuned and not (boundary > 0 and isinstance(layer, keras.layers.BatchNormalization))


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
    train_metadata: np.ndarray | None = None,
    val_metadata: np.ndarray | None = None,
):
    """Build and train the classifier; returns ``(model, history DataFrame)`` (best weights restored).

    With ``train.freeze_epochs > 0`` training has two phases: the backbone frozen for that many
    epochs, then its top ``train.unfreeze_layers`` layers (0 = all) fine-tuned at
    ``lr × train.fine_tune_lr_factor`` for the remaining epochs. ``*_metadata``: encoded metadata per row.
    """
    import keras

    from mobiledx.augmentation import augmentation_layers
    from mobiledx.schedules import LearningRateLogger, learning_rate, schedule_callbacks

    make_deterministic(config.seed)
    metadata_features = 0 if train_metadata is None else train_metadata.shape[1]
    model = build_model(config, len(classes), images.shape[1], metadata_features)
    train_data = make_dataset(
        images, train_rows, one_hot(train_labels, classes), train_weights, config.batch_size,
        shuffle_seed=config.seed, augmenter=augmentation_layers(config.augmentation, config.seed),
        metadata=train_metadata,
    )
    val_data = make_dataset(images, val_rows, one_hot(val_labels, classes), None, config.batch_size,
                            metadata=val_metadata)
    steps_per_epoch = int(np.ceil(len(train_rows) / config.batch_size))
    calibration_rows = np.random.default_rng(config.seed).permutation(len(train_rows))[: config.bn_calibration_images]
    calibration_rows = np.sort(calibration_rows)
    calibration_inputs = images[train_rows[calibration_rows]]
    if train_metadata is not None:
        calibration_inputs = {"image": calibration_inputs, "metadata": train_metadata[calibration_rows]}

    phases = [(config.epochs, config.lr)]
    if 0 < config.freeze_epochs < config.epochs:
        phases = [(config.freeze_epochs, config.lr), (config.epochs, config.lr * config.fine_tune_lr_factor)]
    histories = []
    initial_epoch = 0
    for phase, (until_epoch, phase_lr) in enumerate(phases):
        if len(phases) > 1:
            set_backbone_trainable(model, trainable=phase == 1, top_layers=config.unfreeze_layers)
        model.compile(
            optimizer=keras.optimizers.Adam(
                learning_rate=learning_rate(config.schedule, phase_lr, steps_per_epoch, config.restart_epochs),
                epsilon=config.adam_epsilon,
            ),
            loss=make_loss(config.loss, config.focal_gamma),
            metrics=["accuracy"],
        )
        history = model.fit(
            train_data,
            validation_data=val_data,
            initial_epoch=initial_epoch,
            epochs=until_epoch,
            callbacks=[
                BatchNormCalibration(calibration_inputs),
                LearningRateLogger(),
                *schedule_callbacks(config.schedule, config.monitor, config.plateau_patience),
                keras.callbacks.EarlyStopping(
                    monitor=config.monitor, patience=config.patience, restore_best_weights=True, verbose=1
                ),
                *(callbacks or []),
            ],
            shuffle=False,  # the tf.data pipeline already shuffles, seeded
            verbose=2,
        )
        frame = pd.DataFrame(history.history)
        frame.insert(0, "epoch", np.arange(initial_epoch + 1, initial_epoch + len(frame) + 1))
        frame.insert(1, "phase", "full" if len(phases) == 1 else ("frozen", "fine_tune")[phase])
        histories.append(frame)
        initial_epoch += len(frame)
    return model, pd.concat(histories, ignore_index=True)


def _batchnorm_layers(layer) -> list:
    import keras

    found = [layer] if isinstance(layer, keras.layers.BatchNormalization) else []
    for child in getattr(layer, "layers", []):
        found.extend(_batchnorm_layers(child))
    return found


def recalibrate_batchnorm(model, inputs) -> None:
    """Set every BatchNorm layer's moving statistics to those of ``inputs`` at the current weights.

    Moving averages lag behind weights that change fast, as in a short from-scratch training, and
    inference-mode outputs then collapse towards one class. One forward pass over a calibration
    sample with momentum 0 makes inference-mode statistics match the final weights.
    """
    layers = _batchnorm_layers(model)
    momenta = [layer.momentum for layer in layers]
    try:
        for layer in layers:
            layer.momentum = 0.0
        if isinstance(inputs, dict):
            model({k: np.asarray(v, np.float32) for k, v in inputs.items()}, training=True)
        else:
            model(np.asarray(inputs, np.float32), training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum


def BatchNormCalibration(inputs):
    """Keras callback: recalibrate BatchNorm statistics before every validation pass.

    Validation metrics (and so early stopping and the restored best weights) then reflect the
    model as it will run in inference mode. ``inputs``: pixels, or ``{"image", "metadata"}`` for
    metadata models. Does nothing when there are no calibration images.
    """
    import keras

    class _Calibration(keras.callbacks.Callback):
        def on_test_begin(self, logs=None) -> None:
            count = len(inputs["image"]) if isinstance(inputs, dict) else len(inputs)
            if count:
                recalibrate_batchnorm(self.model, inputs)

    return _Calibration()


def best_epoch(history: pd.DataFrame, monitor: str) -> pd.Series:
    """The history row early stopping restored: lowest ``monitor`` for losses, highest otherwise."""
    values = history[monitor]
    return history.loc[values.idxmin() if "loss" in monitor else values.idxmax()]


def predict_probabilities(
    model, images: np.ndarray, rows: np.ndarray, metadata: np.ndarray | None = None, batch_size: int = 64
) -> np.ndarray:
    """Inference-mode class probabilities for ``images[rows]`` (and their encoded ``metadata``)."""
    data = make_dataset(images, rows, np.zeros((len(rows), 1), np.float32), None, batch_size, metadata=metadata)
    return model.predict(data.map(lambda x, _: x), verbose=0)

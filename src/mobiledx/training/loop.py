"""The training loop: the classifier the ``train`` params describe, compiled and fitted in one or two phases.

With ``train.freeze_epochs > 0`` training has two phases: the backbone frozen for that many epochs,
then its top ``train.unfreeze_layers`` layers (0 = all) fine-tuned at ``lr × train.fine_tune_lr_factor``.
Validation always sees the model in inference mode with recalibrated BatchNorm statistics
(:mod:`mobiledx.training.batchnorm`); the training state is backed up after every epoch
(:mod:`mobiledx.training.backup`) and resumed after a crash (:mod:`mobiledx.training.resume`).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd

from mobiledx.data.batches import make_dataset
from mobiledx.models import backbone_layer, build_classifier
from mobiledx.models.augmentation import augmentation_layers
from mobiledx.params import TrainConfig
from mobiledx.training.backup import TrainingBackup
from mobiledx.training.batchnorm import calibration_batches
from mobiledx.training.callbacks import BatchNormCalibration, LearningRateLogger, TrainingProgress
from mobiledx.training.distribute import Cluster
from mobiledx.training.losses import make_loss
from mobiledx.training.memory import check_training_memory
from mobiledx.training.randomness import make_deterministic
from mobiledx.training.resume import restore_model, resume_state
from mobiledx.training.schedules import learning_rate, schedule_callbacks


def one_hot(labels: pd.Series, classes: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {classes}")
    return np.eye(len(classes), dtype=np.float32)[[index[label] for label in labels]]


def build_model(config: TrainConfig, num_classes: int, image_size: int, metadata_features: int = 0):
    """The classifier the ``train`` params describe."""
    return build_classifier(
        num_classes=num_classes, image_size=image_size, backbone=config.backbone, alpha=config.alpha,
        weights=config.weights, head=config.head, dense_units=config.dense_units, dropout=config.dropout,
        bn_momentum=config.bn_momentum, metadata_features=metadata_features, metadata_units=config.metadata_units,
        attention_heads=config.attention_heads,
    )


def set_backbone_trainable(model, trainable: bool, top_layers: int = 0) -> None:
    """Freeze the backbone, or unfreeze its top ``top_layers`` layers (0 = all). BatchNorm layers stay
    frozen while fine-tuning a partly frozen backbone, as Keras recommends for transfer learning."""
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


@dataclass
class TrainingData:
    """What one training reads: the images (array or cache), rows, one-hot targets, weights and metadata."""

    images: object
    classes: list[str]
    train_rows: np.ndarray
    train_labels: pd.Series
    train_weights: np.ndarray
    val_rows: np.ndarray
    val_labels: pd.Series
    train_metadata: np.ndarray | None = None
    val_metadata: np.ndarray | None = None


def phases(config: TrainConfig) -> list[tuple[str, int, float]]:
    """``(name, last epoch, learning rate)`` of each phase: one, or frozen then fine-tune."""
    if 0 < config.freeze_epochs < config.epochs:
        return [("frozen", config.freeze_epochs, config.lr),
                ("fine_tune", config.epochs, config.lr * config.fine_tune_lr_factor)]
    return [("full", config.epochs, config.lr)]


def _compile(model, config: TrainConfig, phase_lr: float, steps_per_epoch: int, strategy) -> None:
    with strategy.scope():
        model.compile(
            optimizer=keras.optimizers.Adam(
                learning_rate=learning_rate(config.schedule, phase_lr, steps_per_epoch, config.restart_epochs),
                epsilon=config.adam_epsilon),
            loss=make_loss(config.loss, config.focal_gamma),
            metrics=["accuracy"],
        )


def _datasets(config: TrainConfig, data: TrainingData, augmenter):
    """The training batches (shuffled, seeded, through ``augmenter``) and the validation batches (``tf.data``)."""
    train_data = make_dataset(data.images, data.train_rows, one_hot(data.train_labels, data.classes),
                              data.train_weights, config.batch_size, shuffle_seed=config.seed, augmenter=augmenter,
                              metadata=data.train_metadata)
    val_data = make_dataset(data.images, data.val_rows, one_hot(data.val_labels, data.classes), None,
                            config.batch_size, metadata=data.val_metadata)
    return train_data, val_data


def fit(config: TrainConfig, data: TrainingData, callbacks: list | None = None,
        backup: TrainingBackup | None = None, cluster: Cluster | None = None):
    """Build and train the classifier; returns ``(model, history DataFrame)`` (best weights restored).

    ``backup`` saves the training state after every epoch and, if it holds the state of an
    interrupted run of this same training, resumes from it (see :class:`TrainingBackup`).
    ``cluster``: how this process trains (the train stage builds it first thing; by default
    :meth:`Cluster.of` ``train.strategy``). ``train.batch_size`` is the GLOBAL batch: with
    ``train.strategy`` on N replicas each replica gets ``batch_size / N`` examples per step.
    ``data.images``: see :func:`mobiledx.data.batches.make_dataset`.
    """
    cluster = cluster or Cluster.of(config.strategy)  # first: multi_worker needs it before any TF op
    if cluster.name != config.strategy:
        raise ValueError(f"the cluster runs train.strategy={cluster.name}, the config asks for {config.strategy}")
    replicas = cluster.replicas(config.batch_size)
    make_deterministic(config.seed)
    image_size = data.images.shape[1]
    with cluster.strategy.scope():
        model = build_model(config, len(data.classes), image_size,
                            0 if data.train_metadata is None else data.train_metadata.shape[1])
    check_training_memory(model, config, image_size, replicas)
    cluster.prepare_model(model)
    augmenter = augmentation_layers(config.augmentation, config.seed)
    train_data, val_data = _datasets(config, data, augmenter)
    steps_per_epoch = int(np.ceil(len(data.train_rows) / config.batch_size))
    calibration = calibration_batches(data.images, data.train_rows, data.train_metadata,
                                      config.bn_calibration_images, config.batch_size, config.seed)
    plan = phases(config)
    state = resume_state(backup, cluster, model, augmenter, train_data, len(plan))
    rows: list[dict] = list(state["history"]) if state else []
    columns: list[str] = list(state.get("history_columns") or []) if state else []
    completed = state["epoch"] if state else 0
    weights_restored = False
    for phase, (phase_name, until_epoch, phase_lr) in enumerate(plan):
        if state and (phase < state["phase"] or (phase == state["phase"] and state["finished"])):
            continue  # this phase was completed before the interruption
        if len(plan) > 1:
            set_backbone_trainable(model, trainable=phase == 1, top_layers=config.unfreeze_layers)
        _compile(model, config, phase_lr, steps_per_epoch, cluster.strategy)
        resume_in_phase = bool(state) and phase == state["phase"]
        if state and not weights_restored:
            restore_model(backup, state, model, cluster, optimizer=resume_in_phase)
            weights_restored = True
        plateau = schedule_callbacks(config.schedule, config.monitor, config.plateau_patience)
        early_stopping = keras.callbacks.EarlyStopping(
            monitor=config.monitor, patience=config.patience, restore_best_weights=True, verbose=1)
        progress = TrainingProgress(phase, phase_name, rows, columns, completed, backup, early_stopping,
                                    plateau[0] if plateau else None, state if resume_in_phase else None, augmenter)
        # An interrupted phase that early stopping had already ended runs no more epochs: fit() then
        # only restores its best weights, as the uninterrupted run did.
        last_epoch = completed if resume_in_phase and state["stopped"] else until_epoch
        model.fit(
            train_data,
            validation_data=val_data,
            initial_epoch=completed,
            epochs=max(last_epoch, completed),
            callbacks=[
                BatchNormCalibration(calibration),
                LearningRateLogger(),
                *plateau,
                early_stopping,
                progress,  # saves the state the callbacks above have updated...
                *(callbacks or []),
            ],  # ...before e.g. MLflow logs the epoch (a resumed stage logs what is missing)
            shuffle=False,  # the tf.data pipeline already shuffles, seeded
            verbose=2,
        )
        completed = progress.completed
    if state and not weights_restored:  # every phase had finished: the final (best) weights
        restore_model(backup, state, model, cluster, optimizer=False)
    history = pd.DataFrame(rows)
    return model, history[columns] if columns else history


def best_epoch(history: pd.DataFrame, monitor: str) -> pd.Series:
    """The history row early stopping restored: lowest ``monitor`` for losses, highest otherwise."""
    values = history[monitor]
    return history.loc[values.idxmin() if "loss" in monitor else values.idxmax()]

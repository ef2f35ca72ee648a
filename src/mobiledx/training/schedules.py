"""Learning-rate schedules: constant, ReduceLROnPlateau (paper 004), cosine annealing with warm restarts (paper 002)."""

from __future__ import annotations

import keras

from mobiledx.params import SCHEDULES


def learning_rate(schedule: str, lr: float, steps_per_epoch: int, restart_epochs: int = 10):
    """The optimizer's learning rate: a float, or a Keras schedule evaluated per step.

    ``cosine_restarts``: ``CosineDecayRestarts`` from ``lr`` to 0 over ``restart_epochs`` epochs,
    each following cycle twice as long (SGDR, t_mul=2), restarting at ``lr``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"train.schedule must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "cosine_restarts":
        return keras.optimizers.schedules.CosineDecayRestarts(
            initial_learning_rate=lr, first_decay_steps=max(1, restart_epochs * steps_per_epoch), t_mul=2.0, m_mul=1.0
        )
    return lr


def schedule_callbacks(schedule: str, monitor: str, patience: int, factor: float = 0.2, min_lr: float = 1e-7) -> list:
    """Callbacks a schedule needs: ``plateau`` multiplies the LR by ``factor`` (floor ``min_lr``)
    after ``patience`` epochs without improvement of ``monitor``."""
    if schedule != "plateau":
        return []
    return [
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=factor, patience=patience, min_lr=min_lr, verbose=1)
    ]

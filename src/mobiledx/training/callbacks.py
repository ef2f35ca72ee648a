"""The Keras callbacks of a training, in the order ``fit()`` runs them each epoch.

- :class:`BatchNormCalibration`: recalibrates BatchNorm statistics before every validation pass;
- :class:`LearningRateLogger`: adds the learning rate in use to the epoch's logs;
- :class:`TrainingProgress`: records the history and saves the training state to the backup
  (:class:`mobiledx.training.backup.TrainingBackup`), and puts early stopping's and ReduceLROnPlateau's
  counters back when a training resumes;
- :class:`MlflowEpochLogger`: logs each epoch to the active MLflow run (the chief's only), through
  :class:`mobiledx.tracking.mlflow_runs.EpochMetrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import keras
import numpy as np

from mobiledx.tracking.mlflow_runs import EpochMetrics
from mobiledx.training.backup import TrainingBackup
from mobiledx.training.batchnorm import recalibrate_batchnorm
from mobiledx.training.randomness import rng_states


class BatchNormCalibration(keras.callbacks.Callback):
    """Recalibrate BatchNorm statistics before every validation pass.

    Validation metrics (and so early stopping and the restored best weights) then reflect the
    model as it will run in inference mode. ``batches()`` yields the calibration sample batch by
    batch (see :func:`mobiledx.training.batchnorm.calibration_batches`); an empty sample does nothing.
    """

    def __init__(self, batches: Callable[[], Iterable]) -> None:
        super().__init__()
        self.batches = batches

    def on_test_begin(self, logs=None) -> None:
        recalibrate_batchnorm(self.model, self.batches())


class LearningRateLogger(keras.callbacks.Callback):
    """Add the learning rate in use at the end of each epoch to the logs (``learning_rate``)."""

    def on_epoch_end(self, epoch, logs=None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class TrainingProgress(keras.callbacks.Callback):
    """Record each epoch's history row (in ``rows``, columns in ``columns``) and, with a ``backup``, save
    the training state after every epoch and at the end of the phase.

    ``restore``: the backed-up state to continue from (same phase): early stopping's and
    ReduceLROnPlateau's counters and best weights are put back after their ``on_train_begin`` reset.
    ``completed``: the epochs done so far, then after each epoch.
    """

    def __init__(self, phase: int, phase_name: str, rows: list, columns: list, completed: int,
                 backup: TrainingBackup | None, early_stopping, plateau, restore: dict | None,
                 augmenter=None) -> None:
        super().__init__()
        self.phase, self.phase_name = phase, phase_name
        self.rows, self.columns = rows, columns
        self.completed = completed
        self.backup = backup
        self.early_stopping, self.plateau = early_stopping, plateau
        self.restore = restore
        self.augmenter = augmenter

    def on_train_begin(self, logs=None) -> None:
        restore, early_stopping, plateau = self.restore, self.early_stopping, self.plateau
        if restore:
            saved = restore["early_stopping"]
            early_stopping.wait, early_stopping.best = saved["wait"], saved["best"]
            early_stopping.best_epoch = saved["best_epoch"]
            early_stopping.stopped_epoch = restore["epoch"] - 1 if restore["stopped"] else 0
            if restore.get("best_weights"):
                early_stopping.best_weights = self.backup.read_arrays(restore["best_weights"])
            if plateau is not None and restore.get("plateau"):
                for name, value in restore["plateau"].items():
                    setattr(plateau, name, value)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        rows = self.rows
        rows.append({"epoch": epoch + 1, "phase": self.phase_name, **{k: float(v) for k, v in (logs or {}).items()}})
        self.columns[:] = list(rows[-1])
        self.completed = epoch + 1
        if self.backup is not None:
            self._save_epoch(epoch)

    def _save_epoch(self, epoch: int) -> None:
        early_stopping, plateau = self.early_stopping, self.plateau
        improved = early_stopping.best_weights is not None and early_stopping.best_epoch == epoch
        self.backup.save(
            {
                "epoch": epoch + 1, "phase": self.phase, "finished": False, "stopped": bool(self.model.stop_training),
                "history": self.rows, "history_columns": self.columns,
                "early_stopping": {"wait": int(early_stopping.wait), "best": _plain(early_stopping.best),
                                   "best_epoch": int(early_stopping.best_epoch)},
                "plateau": None if plateau is None else {
                    "wait": int(plateau.wait), "best": _plain(plateau.best),
                    "cooldown_counter": int(plateau.cooldown_counter)},
                **rng_states(self.model, self.augmenter),
            },
            weights=self.model.get_weights(),
            optimizer=[np.asarray(v) for v in self.model.optimizer.variables],
            best_weights=early_stopping.best_weights if improved else None,
        )

    def on_train_end(self, logs=None) -> None:
        if self.backup is not None:  # the phase's end state, after early stopping restored its best weights
            self.backup.save({"epoch": self.completed, "phase": self.phase, "finished": True, "stopped": False,
                              "history": self.rows, "history_columns": self.columns,
                              **rng_states(self.model, self.augmenter)},
                             weights=self.model.get_weights())


def _plain(value):
    return None if value is None else float(value)


class MlflowEpochLogger(keras.callbacks.Callback):
    """Log every epoch's metrics to the active MLflow run (a tracking outage never stops the training:
    see :class:`mobiledx.tracking.mlflow_runs.EpochMetrics` and ``flush_epoch_metrics``).

    ``record_environment``: when training begins, tag the run with its environment (``env.*``), read then
    because ``fit()`` has just configured TensorFlow (seeds, op determinism, threads); once, although
    ``fit()`` may run several phases. A resumed training tags it again with the environment of the
    process that finishes it.
    """

    def __init__(self, record_environment: bool = True) -> None:
        super().__init__()
        self.metrics = EpochMetrics()
        self.environment_read = not record_environment

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self.environment_read:
            self.environment_read = True
            self.metrics.tag_environment()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.metrics.add(epoch, logs)

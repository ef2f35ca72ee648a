"""Resume after a crash: the newest backed-up state (:mod:`mobiledx.training.backup`) put back into the training.

The weights and the optimizer go back into the model (:func:`restore_model`); what is not among the
weights (the shuffle order of the training data, the random-number states of the augmentation and of
the model) goes back before the first epoch (:func:`resume_state`). Every worker of a ``multi_worker``
cluster resumes from the same state. Early stopping's and ReduceLROnPlateau's counters are put back by
:class:`mobiledx.training.callbacks.TrainingProgress`, when their callbacks have reset them.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mobiledx.training.backup import TrainingBackup
from mobiledx.training.distribute import Cluster
from mobiledx.training.randomness import rng_variables

# Keras 3's EpochIterator creates two iterators over a dataset of known length per epoch: one when
# the epoch starts and a fresh one after its last batch (keras/src/trainers/epoch_iterator.py).
KERAS_ITERATORS_PER_EPOCH = 2


def resume_state(backup: TrainingBackup | None, cluster: Cluster, model, augmenter, train_data,
                 phase_count: int) -> dict | None:
    """The backed-up state of an interrupted run of this training, with everything that is not among the
    model's weights put back: the shuffle order of the training data, and the random-number states of the
    augmentation (in tf.data) and of the model (dropout). ``None`` when there is nothing to resume."""
    state = _latest_common_state(backup, cluster, model)
    if not state:
        return None
    completed = state["epoch"]
    _advance_shuffle(train_data, completed)
    for variable, value in zip(rng_variables(augmenter), state.get("augmenter") or []):
        variable.assign(np.asarray(value, dtype=variable.dtype))
    with cluster.strategy.scope():
        for variable, value in zip(rng_variables(model), state.get("model_rng") or []):
            variable.assign(np.asarray(value, dtype=variable.dtype))
    done = state["finished"] and state["phase"] == phase_count - 1
    print(f"mobiledx: resuming from epoch {completed}: epochs 1-{completed} restored from the backup in "
          f"{backup.directory}; " + ("training had already finished" if done else
                                     f"training continues with epoch {completed + 1}"), flush=True)
    return state


def restore_model(backup: TrainingBackup, state: dict, model, cluster: Cluster, optimizer: bool) -> None:
    """Put ``state``'s weights (and, with ``optimizer``, the optimizer's variables) into ``model``."""
    model.set_weights(backup.read_arrays(state["weights"]))
    if not (optimizer and state.get("optimizer")):
        return
    values = backup.read_arrays(state["optimizer"])
    with cluster.strategy.scope():
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        variables = model.optimizer.variables
        if [tuple(v.shape) for v in variables] != [value.shape for value in values]:
            print("mobiledx: the backed-up optimizer state does not fit this optimizer; continuing with a "
                  "fresh optimizer state", flush=True)
            return
        for variable, value in zip(variables, values):
            variable.assign(value)


def _latest_common_state(backup: TrainingBackup | None, cluster: Cluster, model) -> dict | None:
    """The state to resume from: the newest complete one (every worker of a ``multi_worker`` cluster
    must resume from the same one: they agree on the newest state all of them hold, or start afresh)."""
    numbers = backup.available() if backup else []
    if cluster.workers > 1:
        numbers = _common_state_numbers(cluster, numbers[-TrainingBackup.KEEP:])
    state = backup.load(numbers[-1]) if numbers else None
    if state and state.get("weight_shapes") != [list(w.shape) for w in model.weights]:
        print(f"mobiledx: the backup in {backup.directory} does not fit this model; training from the start",
              flush=True)
        state = None
    if state is None and backup is not None and backup.available():
        backup.clear()
    return state


def _common_state_numbers(cluster: Cluster, numbers: list[int]) -> list[int]:
    """The state numbers every worker holds (a collective op: every worker must call it)."""
    local = np.full(TrainingBackup.KEEP, -1, np.int64)
    local[: len(numbers)] = numbers[-TrainingBackup.KEEP:]
    values = cluster.strategy.experimental_distribute_values_from_function(lambda _: tf.constant(local))
    gathered = np.asarray(cluster.strategy.gather(values, axis=0)).reshape(-1, TrainingBackup.KEEP)
    common = set.intersection(*(set(int(n) for n in row if n >= 0) for row in gathered))
    return sorted(common)


def _advance_shuffle(dataset, epochs: int) -> None:
    """Move the seeded reshuffle of ``dataset`` on by ``epochs`` epochs, as in an uninterrupted run.

    ``shuffle(seed=..., reshuffle_each_iteration=True)`` draws a new order each time an iterator is
    created; creating (not consuming) as many iterators as ``fit()`` did replays those draws, so a
    resumed training sees the batches the uninterrupted one would have seen (the augmentation's
    random-number state is restored from the backup): tests/unit/test_training.py checks that a
    resumed training ends with exactly the weights of an uninterrupted one.
    """
    for _ in range(epochs * KERAS_ITERATORS_PER_EPOCH):
        iter(dataset)

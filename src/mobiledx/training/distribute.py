"""``tf.distribute`` (``train.strategy``): one device, every GPU of a machine, or several machines."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from mobiledx.params import STRATEGIES
from mobiledx.training.randomness import pin_threads

_STRATEGIES: dict[str, Any] = {}

def distribution_strategy(name: str = "default"):
    """The ``tf.distribute`` strategy ``train.strategy`` names, created once per process.

    - ``default``: TensorFlow's default (one device).
    - ``mirrored``: ``MirroredStrategy``, synchronous data parallelism over all GPUs of this machine
      (one replica on a CPU-only machine).
    - ``multi_worker``: ``MultiWorkerMirroredStrategy`` across the machines that the ``TF_CONFIG``
      environment variable lists (every worker runs the same command with its own ``task``; without
      ``TF_CONFIG`` it trains alone). It must be created before any other TensorFlow op, so a program
      calls this first. Only the chief (:func:`is_chief`) writes outputs and logs to MLflow.

    ``train.batch_size`` is the global batch, split evenly over the replicas.
    """
    if name not in STRATEGIES:
        raise ValueError(f"train.strategy must be one of {STRATEGIES}, got {name!r}")
    if name in _STRATEGIES:
        return _STRATEGIES[name]
    pin_threads()  # TensorFlow's thread pools are fixed before its first op, like the strategy
    import tensorflow as tf

    if name == "default":
        strategy = tf.distribute.get_strategy()
    elif name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    else:
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except (RuntimeError, ValueError) as error:
            raise RuntimeError(
                f"MultiWorkerMirroredStrategy could not be created ({error}). It must be created before any "
                f"other TensorFlow op: call mobiledx.training.distribute.distribution_strategy('multi_worker') first "
                f"thing in the program, and check TF_CONFIG."
            ) from error
        _patch_keras_multi_worker_reduce()
    _STRATEGIES[name] = strategy
    return strategy

def replicas_for(strategy, config) -> int:
    """The strategy's replica count; the global ``train.batch_size`` must divide evenly over them."""
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(f"train.batch_size ({config.batch_size}) is the global batch and must be divisible by "
                         f"the {replicas} replicas of train.strategy={config.strategy}")
    if replicas > 1:
        print(f"mobiledx: {config.strategy} strategy, {replicas} replicas: global batch {config.batch_size} = "
              f"{config.batch_size // replicas} per replica", flush=True)
    return replicas


def _tf_config() -> dict:
    text = os.environ.get("TF_CONFIG", "").strip()
    return json.loads(text) if text else {}

def task_name(strategy: str) -> str:
    """``chief`` for the process that owns outputs, else ``worker-<index>`` (``multi_worker`` only)."""
    if strategy != "multi_worker":
        return "chief"
    config = _tf_config()
    task = config.get("task") or {}
    kind, index = task.get("type"), int(task.get("index", 0))
    worker_zero = kind == "worker" and index == 0 and "chief" not in config.get("cluster", {})
    if kind is None or kind == "chief" or worker_zero:
        return "chief"
    return f"{kind}-{index}"

def is_chief(strategy: str) -> bool:
    """Whether this process writes the outputs and logs to MLflow: always, except for the non-chief
    workers of a ``multi_worker`` cluster (``TF_CONFIG``: task type ``chief``, or worker 0 when the
    cluster has no ``chief`` job)."""
    return task_name(strategy) == "chief"

def cluster_workers(strategy: str) -> int:
    """How many processes train together (1 unless ``multi_worker`` with a ``TF_CONFIG`` cluster)."""
    if strategy != "multi_worker":
        return 1
    cluster = _tf_config().get("cluster", {})
    return max(1, sum(len(cluster.get(job, [])) for job in ("chief", "worker")))

def save_worker_copy(model) -> None:
    """What a non-chief worker does instead of writing outputs (the Keras multi-worker pattern): save
    to a temporary folder, which is deleted, so that any collective op in saving runs on every worker."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="mobiledx-worker-"))
    try:
        model.save(folder / "model.keras")
    finally:
        shutil.rmtree(folder, ignore_errors=True)

def patch_symbolic_build(model) -> None:
    """Work around Keras 3 + ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585,
    tensorflow/tensorflow#72388): ``fit()`` builds the model symbolically from the first batch and
    averages that (nested) batch with ``strategy.reduce``, which fails across workers ("Attempt to
    convert a value (PerReplica...)"). The batch only provides shapes: this model takes the local one."""
    import types

    import tensorflow as tf
    from keras import tree

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tree.map_structure(
                    lambda value: self.distribute_strategy.experimental_local_results(value)[0]
                    if isinstance(value, tf.distribute.DistributedValues) else value,
                    next(batches),
                )
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = types.MethodType(_maybe_symbolic_build, model)

def _patch_keras_multi_worker_reduce() -> None:
    """Work around Keras 3 averaging each step's scalar loss and metrics across workers with
    ``strategy.reduce("MEAN", value, axis=0)``, invalid for scalars ("Invalid reduction dimension 0
    for input with 0 dimensions"): reduce them with ``axis=None`` (the mean over replicas)."""
    from keras import tree
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer.reduce_per_replica, "_mobiledx_patch", False):
        return
    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica._mobiledx_patch = True
    trainer.reduce_per_replica = reduce_per_replica

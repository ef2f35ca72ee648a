"""``tf.distribute`` (``train.strategy``): one device, every GPU of a machine, or several machines.

:class:`Cluster` is the one place that knows how this process trains: the strategy, how many processes
train together and which one this is (only the chief writes outputs and logs to MLflow). The train stage
builds it first thing and hands it to the training loop and the resume code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow as tf
from keras import tree
from keras.src.backend.tensorflow import trainer

from mobiledx.params import STRATEGIES
from mobiledx.training.randomness import pin_threads

_STRATEGIES: dict[str, Any] = {}


@dataclass(frozen=True)
class Cluster:
    """This process's part in a training: ``strategy`` (the ``tf.distribute`` strategy that ``name``,
    ``train.strategy``, names), ``workers`` (how many processes train together: 1 unless ``multi_worker``
    with a ``TF_CONFIG`` cluster) and ``task`` (``chief``, the process that writes the outputs and logs
    to MLflow, else ``worker-<index>``). Build it with :meth:`of`."""

    name: str
    strategy: Any
    workers: int = 1
    task: str = "chief"

    @property
    def is_chief(self) -> bool:
        return self.task == "chief"

    @classmethod
    def of(cls, name: str = "default") -> Cluster:
        """This process's cluster for ``train.strategy`` ``name``; the strategy is created once per process.

        - ``default``: TensorFlow's default (one device).
        - ``mirrored``: ``MirroredStrategy``, synchronous data parallelism over all GPUs of this machine
          (one replica on a CPU-only machine).
        - ``multi_worker``: ``MultiWorkerMirroredStrategy`` across the machines that the ``TF_CONFIG``
          environment variable lists (every worker runs the same command with its own ``task``; without
          ``TF_CONFIG`` it trains alone). It must be created before any other TensorFlow op, so a program
          calls this first. The chief is the task of type ``chief``, or worker 0 when the cluster has no
          ``chief`` job.

        ``train.batch_size`` is the global batch, split evenly over the replicas (:meth:`replicas`).
        """
        strategy = _strategy(name)
        if name != "multi_worker":  # TF_CONFIG only matters to multi_worker
            return cls(name, strategy)
        config = _tf_config()
        cluster = config.get("cluster", {})
        task = config.get("task") or {}
        kind, index = task.get("type"), int(task.get("index", 0))
        worker_zero = kind == "worker" and index == 0 and "chief" not in cluster
        return cls(name, strategy, workers=max(1, sum(len(cluster.get(job, [])) for job in ("chief", "worker"))),
                   task="chief" if kind is None or kind == "chief" or worker_zero else f"{kind}-{index}")

    def replicas(self, batch_size: int) -> int:
        """The strategy's replica count; the global ``train.batch_size`` must divide evenly over them."""
        replicas = self.strategy.num_replicas_in_sync
        if batch_size % replicas:
            raise ValueError(f"train.batch_size ({batch_size}) is the global batch and must be divisible by "
                             f"the {replicas} replicas of train.strategy={self.name}")
        if replicas > 1:
            print(f"mobiledx: {self.name} strategy, {replicas} replicas: global batch {batch_size} = "
                  f"{batch_size // replicas} per replica", flush=True)
        return replicas

    def prepare_model(self, model) -> None:
        """What ``model`` needs to train under this strategy (:func:`_patch_symbolic_build` unless ``default``)."""
        if self.name != "default":
            _patch_symbolic_build(model)


def _strategy(name: str):
    if name not in STRATEGIES:
        raise ValueError(f"train.strategy must be one of {STRATEGIES}, got {name!r}")
    if name in _STRATEGIES:
        return _STRATEGIES[name]
    pin_threads()  # TensorFlow's thread pools are fixed before its first op, like the strategy
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
                f"other TensorFlow op: call mobiledx.training.distribute.Cluster.of('multi_worker') first "
                f"thing in the program, and check TF_CONFIG."
            ) from error
        _patch_keras_multi_worker_reduce()
    _STRATEGIES[name] = strategy
    return strategy


def _tf_config() -> dict:
    text = os.environ.get("TF_CONFIG", "").strip()
    return json.loads(text) if text else {}


def save_worker_copy(model) -> None:
    """What a non-chief worker does instead of writing outputs (the Keras multi-worker pattern): save
    to a temporary folder, which is deleted, so that any collective op in saving runs on every worker."""
    folder = Path(tempfile.mkdtemp(prefix="mobiledx-worker-"))
    try:
        model.save(folder / "model.keras")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _patch_symbolic_build(model) -> None:
    """Work around Keras 3 + ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585,
    tensorflow/tensorflow#72388): ``fit()`` builds the model symbolically from the first batch and
    averages that (nested) batch with ``strategy.reduce``, which fails across workers ("Attempt to
    convert a value (PerReplica...)"). The batch only provides shapes: this model takes the local one."""

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
    if getattr(trainer.reduce_per_replica, "_mobiledx_patch", False):
        return
    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica._mobiledx_patch = True
    trainer.reduce_per_replica = reduce_per_replica

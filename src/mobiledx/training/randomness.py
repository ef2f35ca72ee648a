"""Seeds, thread counts and random-number states: same params + same data (+ same machine) = same model."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from mobiledx.tracking.environment import schedulable_cpus


def pin_threads() -> int:
    """Fix TensorFlow's intra- and inter-op thread pools to the schedulable cores; returns that count.

    TF's reductions split their work by thread count, so a count left to TF's defaults could change a
    model's last bits between two runs of one machine (e.g. when cgroup limits change). Takes effect
    before TF's first op (:meth:`mobiledx.training.distribute.Cluster.of`, the first TF call of a training,
    calls it); in a process that already ran TF (a test, a notebook) the pools stay as they
    are. Either way the run's ``env.tf_*_threads`` tags record them.
    """
    threads = schedulable_cpus()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TF already started in this process: its thread pools can no longer change
        return tf.config.threading.get_intra_op_parallelism_threads() or threads
    return threads


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic (same params + data = same model)."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def rng_variables(layer) -> list:
    """The ``SeedGenerator`` states of ``layer`` (not among its weights)."""
    if layer is None:
        return []
    return [v for v in layer.variables if v.path.endswith("seed_generator_state")]


def rng_states(model, augmenter) -> dict:
    return {"augmenter": [np.asarray(v).tolist() for v in rng_variables(augmenter)],
            "model_rng": [np.asarray(v).tolist() for v in rng_variables(model)]}

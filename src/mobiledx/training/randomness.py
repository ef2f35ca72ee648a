"""Seeds and random-number states: same params + same data = same model."""

from __future__ import annotations

import numpy as np


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic (same params + data = same model)."""
    import keras
    import tensorflow as tf

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

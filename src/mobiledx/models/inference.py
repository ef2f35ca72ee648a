"""Inference with a trained Keras model: loading it safely and class probabilities in batches.

Evaluation, export and the CLI use this module, never the training code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mobiledx.data.batches import make_dataset


def load_model(path: str | Path):
    """Load a trained ``.keras`` model with Keras safe mode on (no arbitrary code from the file)."""
    import keras

    import mobiledx.models.attention  # noqa: F401  registers the custom layers before deserialising
    import mobiledx.models.layers  # noqa: F401

    return keras.models.load_model(path, safe_mode=True)


def predict_probabilities(
    model, images, rows: np.ndarray, batch_size: int, metadata: np.ndarray | None = None
) -> np.ndarray:
    """Inference-mode class probabilities for ``images[rows]`` (and their encoded ``metadata``), read
    and predicted ``batch_size`` images at a time (``images``: an array or a mapped image cache)."""
    data = make_dataset(images, rows, np.zeros((len(rows), 1), np.float32), None, batch_size, metadata=metadata)
    return model.predict(data.map(lambda x, _: x), verbose=0)

"""BatchNorm statistics that match the weights: recalibration on a training sample, batch by batch."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import keras
import numpy as np

from mobiledx.training.randomness import rng_variables


def _batchnorm_layers(layer) -> list:
    found = [layer] if isinstance(layer, keras.layers.BatchNormalization) else []
    for child in getattr(layer, "layers", []):
        found.extend(_batchnorm_layers(child))
    return found

def calibration_batches(images, train_rows: np.ndarray, train_metadata: np.ndarray | None, count: int,
                        batch_size: int, seed: int) -> Callable[[], Iterator]:
    """The BatchNorm calibration sample: ``count`` training images drawn once (seeded), read from
    ``images`` in batches of at most ``batch_size`` each time the returned function is called.
    Batches are float32 pixels, or ``{"image", "metadata"}`` for metadata models."""
    chosen = np.sort(np.random.default_rng(seed).permutation(len(train_rows))[:count])

    def batches() -> Iterator:
        for start in range(0, len(chosen), batch_size):
            positions = chosen[start:start + batch_size]
            pixels = np.asarray(images[train_rows[positions]], dtype=np.float32)
            yield pixels if train_metadata is None else {"image": pixels, "metadata": train_metadata[positions]}

    return batches

def recalibrate_batchnorm(model, batches: Iterable) -> None:
    """Set every BatchNorm layer's moving statistics to the mean and variance of its inputs over
    ALL ``batches`` (pixels, or ``{"image", "metadata"}`` dicts) at the current weights.

    Moving averages lag behind weights that change fast, as in a short from-scratch training, and
    inference-mode outputs then collapse towards one class. Here the model runs once per batch in
    training mode (momentum 0, so each layer's moving statistics become that batch's), and the
    batch statistics are pooled exactly: mean = Σ nᵢ·meanᵢ / N, variance = Σ nᵢ·(varᵢ + (meanᵢ − mean)²) / N.
    Memory is that of one batch, whatever the sample size. A layer whose input passes no
    earlier BatchNorm gets exactly the statistics of one pass over the whole sample; deeper layers
    see their inputs normalised per batch, as in training ("precise BatchNorm"). The model's random
    generators (dropout) are left as they were.
    """
    layers = _batchnorm_layers(model)
    if not layers:
        return
    momenta = [layer.momentum for layer in layers]
    # Training-mode passes draw random numbers (dropout): put the generators back afterwards, so that
    # calibrating (or not, or on more images) never changes the training that follows.
    generators = rng_variables(model)
    generator_states = [np.asarray(variable) for variable in generators]
    sizes: list[int] = []
    statistics: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in layers]  # per layer: (mean, var) per batch
    try:
        for layer in layers:
            layer.momentum = 0.0
        for batch in batches:
            sizes.append(len(batch["image"]) if isinstance(batch, dict) else len(batch))
            model(batch, training=True)
            for layer, found in zip(layers, statistics):
                found.append((np.asarray(layer.moving_mean, np.float64), np.asarray(layer.moving_variance, np.float64)))
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        for variable, state in zip(generators, generator_states):
            variable.assign(state)
    if not sizes:
        return
    weights = np.asarray(sizes, np.float64)[:, None] / sum(sizes)
    for layer, found in zip(layers, statistics):
        means = np.stack([mean for mean, _ in found])
        variances = np.stack([variance for _, variance in found])
        mean = (weights * means).sum(axis=0)
        # Total variance = mean within-batch variance + variance of the batch means (exact, no cancellation).
        variance = (weights * (variances + (means - mean) ** 2)).sum(axis=0)
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(variance.astype(np.float32))

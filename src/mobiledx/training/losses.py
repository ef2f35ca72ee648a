"""Losses: cross-entropy or focal; class weighting arrives as sample weights from the rebalance stage."""

from __future__ import annotations

import keras

from mobiledx.params import LOSSES


def make_loss(name: str, focal_gamma: float = 2.0):
    """Categorical cross-entropy (binary cross-entropy on the sigmoid head's logit, through its ``[1-p, p]`` output) or
    focal loss; class weighting comes in as sample weights from the rebalance stage."""
    if name not in LOSSES:
        raise ValueError(f"train.loss must be one of {LOSSES}, got {name!r}")
    if name == "focal":
        return keras.losses.CategoricalFocalCrossentropy(alpha=1.0, gamma=focal_gamma)
    return keras.losses.CategoricalCrossentropy()

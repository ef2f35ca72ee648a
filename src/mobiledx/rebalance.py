"""Rebalancing the training split: "balanced" class weights or random over-sampling."""

from __future__ import annotations

import numpy as np
import pandas as pd

METHODS = ("none", "class_weight", "oversample")


def balanced_class_weights(labels: pd.Series, classes: list[str]) -> dict[str, float]:
    """N / (C · N_c) per class, computed on the given (training) labels."""
    counts = labels.value_counts()
    missing = [c for c in classes if counts.get(c, 0) == 0]
    if missing:
        raise ValueError(f"no training images for class(es) {missing}: cannot weight them")
    total = float(len(labels))
    return {c: total / (len(classes) * float(counts[c])) for c in classes}


def rebalance(train: pd.DataFrame, classes: list[str], method: str, seed: int) -> tuple[pd.DataFrame, dict[str, float]]:
    """Return the training index (``image_id, label``, one row per sample seen per epoch) and class weights.

    ``class_weight``: every image once, weights N/(C·N_c). ``oversample``: imbalanced-learn's
    RandomOverSampler repeats minority images until classes are even; weights are all 1.
    """
    if method not in METHODS:
        raise ValueError(f"rebalance.method must be one of {METHODS}, got {method!r}")
    ones = {c: 1.0 for c in classes}
    if method == "none":
        return train[["image_id", "label"]].reset_index(drop=True), ones
    if method == "class_weight":
        return train[["image_id", "label"]].reset_index(drop=True), balanced_class_weights(train["label"], classes)
    from imblearn.over_sampling import RandomOverSampler

    sampler = RandomOverSampler(random_state=seed)
    positions = np.arange(len(train)).reshape(-1, 1)
    resampled, _ = sampler.fit_resample(positions, train["label"].to_numpy())
    return train.iloc[resampled.ravel()][["image_id", "label"]].reset_index(drop=True), ones

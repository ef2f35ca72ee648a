"""Rebalancing the training split: subsampling, class weights, re-sampling or offline augmentation.

The result is a training index (one row per sample seen per epoch): ``image_id, label, source``.
``source`` is ``original`` (a row of the ingested image array) or ``augmented`` (``image_id`` is then
``augmented:<k>``, row ``k`` of the augmented array this stage writes, made from ``source_image_id``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

METHODS = ("none", "class_weight", "oversample", "undersample", "augment")
AUGMENTED_PREFIX = "augmented:"


@dataclass
class RebalanceConfig:
    """The ``rebalance`` params."""

    method: str
    train_fraction: float = 1.0  # share of training groups kept (paper 000's half-data study)
    target_per_class: int = 0  # method augment: grow every class to this many images
    augmentation: str = "paper004"  # method augment: the preset that makes the new images

    @classmethod
    def from_params(cls, rebalance: dict) -> "RebalanceConfig":
        config = cls(
            method=str(rebalance["method"]),
            train_fraction=float(rebalance.get("train_fraction", 1.0)),
            target_per_class=int(rebalance.get("target_per_class", 0)),
            augmentation=str(rebalance.get("augmentation", "paper004")),
        )
        if config.method not in METHODS:
            raise ValueError(f"rebalance.method must be one of {METHODS}, got {config.method!r}")
        if not 0 < config.train_fraction <= 1:
            raise ValueError(f"rebalance.train_fraction must be in (0, 1], got {config.train_fraction}")
        if config.method == "augment" and config.target_per_class <= 0:
            raise ValueError("rebalance.method=augment needs rebalance.target_per_class > 0")
        return config


def balanced_class_weights(labels: pd.Series, classes: list[str]) -> dict[str, float]:
    """N / (C · N_c) per class, computed on the given (training) labels."""
    counts = labels.value_counts()
    missing = [c for c in classes if counts.get(c, 0) == 0]
    if missing:
        raise ValueError(f"no training images for class(es) {missing}: cannot weight them")
    total = float(len(labels))
    return {c: total / (len(classes) * float(counts[c])) for c in classes}


def subsample_groups(train: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Keep ``fraction`` of the training groups (lesions/subjects) of each class, seeded; at least one per class."""
    if fraction >= 1:
        return train
    rng = np.random.default_rng(seed)
    first_label = train.groupby("group_id", sort=True)["label"].first()
    kept: list[str] = []
    for label in sorted(first_label.unique()):
        groups = first_label.index[first_label == label].to_numpy()
        count = max(1, int(round(fraction * len(groups))))
        kept.extend(rng.permutation(groups)[:count])
    return train[train["group_id"].isin(kept)]


def _resample(train: pd.DataFrame, sampler) -> pd.DataFrame:
    positions = np.arange(len(train)).reshape(-1, 1)
    resampled, _ = sampler.fit_resample(positions, train["label"].to_numpy())
    return train.iloc[resampled.ravel()]


def augment_to_target(
    images: np.ndarray, labels: pd.Series, target: int, preset: str, seed: int, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """New images (uint8) for every class with fewer than ``target`` images, made by the augmentation
    ``preset`` from that class's images (drawn in seeded random order).

    Returns ``(images, sources)``: the new pixels and, per new image, the position of its source image."""
    from tqdm import tqdm

    from mobiledx.augmentation import augmentation_layers

    rng = np.random.default_rng(seed)
    sources: list[int] = []
    label_values = labels.to_numpy()
    for label in sorted(set(label_values)):
        members = np.flatnonzero(label_values == label)
        missing = target - len(members)
        if missing > 0:
            sources.extend(rng.choice(members, size=missing, replace=True))
    order = np.asarray(sources, dtype=np.int64)
    if not len(order):
        return np.zeros((0, *images.shape[1:]), np.uint8), order
    augmenter = augmentation_layers(preset, seed)
    if augmenter is None:
        raise ValueError("rebalance.augmentation=none cannot make new images; pick a preset")
    made = []
    for start in tqdm(range(0, len(order), batch_size), desc="offline augmentation", unit="batch"):
        batch = images[order[start:start + batch_size]].astype(np.float32)
        made.append(np.clip(np.round(np.asarray(augmenter(batch, training=True))), 0, 255).astype(np.uint8))
    return np.concatenate(made), order


def rebalance(
    train: pd.DataFrame, classes: list[str], config: RebalanceConfig, seed: int, images_of=None
) -> tuple[pd.DataFrame, dict[str, float], np.ndarray | None]:
    """Return the training index, class weights and (method ``augment``) the new images.

    ``class_weight``: every image once, weights N/(C·N_c) on the (sub-sampled) training split.
    ``oversample``/``undersample``: imbalanced-learn's random samplers even out the classes; weights 1.
    ``augment``: offline augmentation grows each class to ``target_per_class`` (paper 004);
    ``images_of(image_ids)`` must return the training pixels.
    """
    train = subsample_groups(train, config.train_fraction, seed)
    ones = {c: 1.0 for c in classes}
    weights = ones
    augmented = None
    if config.method == "class_weight":
        weights = balanced_class_weights(train["label"], classes)
    elif config.method == "oversample":
        from imblearn.over_sampling import RandomOverSampler

        train = _resample(train, RandomOverSampler(random_state=seed))
    elif config.method == "undersample":
        from imblearn.under_sampling import RandomUnderSampler

        train = _resample(train, RandomUnderSampler(random_state=seed))
    index = train[["image_id", "label"]].reset_index(drop=True).assign(source="original")
    index["source_image_id"] = index["image_id"]
    if config.method == "augment":
        augmented, sources = augment_to_target(
            images_of(index["image_id"]), index["label"], config.target_per_class, config.augmentation, seed
        )
        extra = pd.DataFrame({
            "image_id": [f"{AUGMENTED_PREFIX}{k}" for k in range(len(sources))],
            "label": index["label"].to_numpy()[sources],
            "source": "augmented",
            "source_image_id": index["image_id"].to_numpy()[sources],
        })
        index = pd.concat([index, extra], ignore_index=True)
    return index, weights, augmented


def training_rows(index: pd.DataFrame, rows_of, original_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the training images in ``concatenate([ingested, augmented])`` and of their source images
    in the ingested array (for metadata): ``rows_of(image_ids)`` maps ingested ids to rows."""
    augmented = index["source"].to_numpy() == "augmented"
    rows = np.empty(len(index), np.int64)
    rows[~augmented] = rows_of(index.loc[~augmented, "image_id"])
    rows[augmented] = original_count + index.loc[augmented, "image_id"].str.removeprefix(AUGMENTED_PREFIX).astype(int)
    return rows, rows_of(index["source_image_id"])

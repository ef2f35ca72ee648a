"""Rebalancing the training split: subsampling, class weights, re-sampling or offline augmentation.

The result is a training index (one row per sample seen per epoch): ``image_id, label, source``.
``source`` is ``original`` (a row of the ingested image array) or ``augmented`` (``image_id`` is then
``augmented:<k>``, row ``k`` of the augmented array this stage writes, made from ``source_image_id``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from mobiledx.errors import MobiledxError
from mobiledx.params import RebalanceParams

AUGMENTED_PREFIX = "augmented:"


class RebalanceError(MobiledxError, ValueError):
    """The training split cannot be rebalanced as the params ask."""

AUGMENTATION_BATCH = 64  # images made per step of offline augmentation


def balanced_class_weights(labels: pd.Series, classes: list[str]) -> dict[str, float]:
    """N / (C · N_c) per class, computed on the given (training) labels."""
    counts = labels.value_counts()
    missing = [c for c in classes if counts.get(c, 0) == 0]
    if missing:
        raise RebalanceError(f"no training images for class(es) {missing}: cannot weight them. Fix: add data for "
                             f"them, raise rebalance.train_fraction, or leave them out with datasets.<name>.labels.map")
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


def augmentation_sources(labels: pd.Series, target: int, seed: int) -> np.ndarray:
    """For every class with fewer than ``target`` images, the positions (in ``labels``) of the images
    that the new ones are made from, drawn in seeded random order, with replacement."""
    rng = np.random.default_rng(seed)
    sources: list[int] = []
    label_values = labels.to_numpy()
    for label in sorted(set(label_values)):
        members = np.flatnonzero(label_values == label)
        missing = target - len(members)
        if missing > 0:
            sources.extend(rng.choice(members, size=missing, replace=True))
    return np.asarray(sources, dtype=np.int64)


def augmented_batches(images, sources: np.ndarray, preset: str, seed: int, batch_size: int) -> Iterator[np.ndarray]:
    """The new uint8 images, batch by batch: ``images[sources]`` transformed by the augmentation ``preset``.

    ``images`` is indexable by row positions (an array, or a lazy view of the image cache); at most
    ``batch_size`` images are in memory at a time.
    """
    from tqdm import tqdm

    # Lazy on purpose: augmentation imports Keras and TensorFlow (about 3 s), which only method augment needs;
    # at the top it would slow every rebalance stage (its module otherwise imports in about 0.4 s).
    from mobiledx.models.augmentation import augmentation_layers

    if not len(sources):
        return
    augmenter = augmentation_layers(preset, seed)
    if augmenter is None:
        raise RebalanceError("rebalance.augmentation=none cannot make new images. Fix: pick a preset, e.g. paper004")
    for start in tqdm(range(0, len(sources), batch_size), desc="offline augmentation", unit="batch"):
        batch = np.asarray(images[sources[start:start + batch_size]], dtype=np.float32)
        yield np.clip(np.round(np.asarray(augmenter(batch, training=True))), 0, 255).astype(np.uint8)


def rebalance(
    train: pd.DataFrame, classes: list[str], config: RebalanceParams, seed: int
) -> tuple[pd.DataFrame, dict[str, float], np.ndarray]:
    """Return the training index, class weights and the augmentation sources.

    ``class_weight``: every image once, weights N/(C·N_c) on the (sub-sampled) training split.
    ``oversample``/``undersample``: imbalanced-learn's random samplers even out the classes; weights 1.
    ``augment``: offline augmentation grows each class to ``target_per_class`` (paper 004): the index
    gains one ``augmented:<k>`` row per new image, and ``sources[k]`` is the index row (an original
    image) that image ``k`` is made from (see :func:`augmented_batches`). Empty for other methods.
    """
    train = subsample_groups(train, config.train_fraction, seed)
    ones = {c: 1.0 for c in classes}
    weights = ones
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
    sources = np.zeros(0, np.int64)
    if config.method == "augment":
        sources = augmentation_sources(index["label"], config.target_per_class, seed)
        extra = pd.DataFrame({
            "image_id": [f"{AUGMENTED_PREFIX}{k}" for k in range(len(sources))],
            "label": index["label"].to_numpy()[sources],
            "source": "augmented",
            "source_image_id": index["image_id"].to_numpy()[sources],
        })
        index = pd.concat([index, extra], ignore_index=True)
    return index, weights, sources


def training_rows(index: pd.DataFrame, rows_of, original_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the training images in the ingested images followed by the augmented ones (see
    :class:`mobiledx.data.cache.ImageStack`) and of their source images
    in the ingested array (for metadata): ``rows_of(image_ids)`` maps ingested ids to rows."""
    augmented = index["source"].to_numpy() == "augmented"
    rows = np.empty(len(index), np.int64)
    rows[~augmented] = rows_of(index.loc[~augmented, "image_id"])
    rows[augmented] = original_count + index.loc[augmented, "image_id"].str.removeprefix(AUGMENTED_PREFIX).astype(int)
    return rows, rows_of(index["source_image_id"])

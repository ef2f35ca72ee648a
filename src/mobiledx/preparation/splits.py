"""Group-aware, stratified, seeded train/val/test splits: no lesion or subject crosses a split."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from mobiledx.errors import MobiledxError
from mobiledx.params import SplitParams

SPLITS = ("train", "val", "test")


class LeakageError(AssertionError):
    """A group (lesion, subject) appears in more than one split (a bug: splits never do this)."""


class SplitError(MobiledxError, ValueError):
    """The data cannot be split as the ``split`` params ask (too few groups or images)."""


def _hold_out(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a stratified, grouped hold-out of about ``fraction`` of the rows."""
    n_folds = max(2, int(round(1.0 / fraction)))
    n_groups = len(np.unique(groups))
    if n_groups < n_folds:
        raise SplitError(f"only {n_groups} groups (lesions, patients or images): too few to hold out {fraction:.0%} by "
                         f"group. Fix: lower split.test_fraction / split.val_fraction, or add data")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    _, held_out = next(splitter.split(np.zeros(len(labels)), labels, groups))
    mask = np.zeros(len(labels), dtype=bool)
    mask[held_out] = True
    return mask


def _per_class_test(labels: np.ndarray, groups: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Whole groups, in seeded random order, until each class has at least ``per_class`` test images."""
    frame = pd.DataFrame({"label": labels, "group": groups})
    group_label = frame.groupby("group")["label"].agg(lambda values: values.value_counts().index[0])
    order = np.random.default_rng(seed).permutation(group_label.index.to_numpy())
    chosen: set = set()
    for label in sorted(set(labels)):
        have = 0
        for group in order:
            if have >= per_class:
                break
            if group_label[group] == label and group not in chosen:
                chosen.add(group)
                have += int((frame["group"] == group).sum())
        if have < per_class:
            raise SplitError(f"class {label!r} has only {have} images: cannot hold out {per_class} for testing. "
                             f"Fix: lower split.test_per_class")
    return frame["group"].isin(chosen).to_numpy()


def _test_mask(manifest: pd.DataFrame, config: SplitParams, seed: int) -> np.ndarray:
    labels = manifest["label"].to_numpy()
    groups = manifest["group_id"].to_numpy()
    if config.method == "fractions":
        return _hold_out(labels, groups, config.test_fraction, seed)
    if config.method == "per_class":
        return _per_class_test(labels, groups, config.test_per_class, seed)
    if config.method == "kfold":
        splitter = StratifiedGroupKFold(n_splits=config.folds, shuffle=True, random_state=seed)
        _, held_out = list(splitter.split(np.zeros(len(labels)), labels, groups))[config.fold]
        mask = np.zeros(len(labels), dtype=bool)
        mask[held_out] = True
        return mask
    source = manifest["source_split"].to_numpy()
    if not (source == "test").any():
        raise SplitError("split.method=source but the dataset has no source test split (source_split column is "
                         "empty). Fix: use split.method: fractions (or kfold / per_class)")
    return source == "test"


def split_manifest(manifest: pd.DataFrame, config: SplitParams, seed: int) -> pd.DataFrame:
    """Assign each image to train/val/test; returns ``image_id, group_id, label, split`` in manifest order.

    Groups stay whole and class proportions are kept as closely as the group sizes allow;
    a split in which a group crosses splits raises :class:`LeakageError`.
    """
    labels = manifest["label"].to_numpy()
    groups = manifest["group_id"].to_numpy()
    split = np.full(len(manifest), "train", dtype=object)
    test = _test_mask(manifest, config, seed)
    split[test] = "test"
    rest = np.flatnonzero(~test)
    if config.method == "source" and (manifest["source_split"].to_numpy()[rest] == "val").any():
        val = manifest["source_split"].to_numpy()[rest] == "val"
    else:
        val_share = config.val_fraction / max(1e-9, len(rest) / len(manifest))
        val = _hold_out(labels[rest], groups[rest], min(val_share, 0.5), seed + 1)
    split[rest[val]] = "val"
    result = manifest[["image_id", "group_id", "label"]].copy()
    result["split"] = split
    assert_no_group_leakage(result)
    untrained = sorted(set(labels) - set(labels[split == "train"]))
    if untrained:
        raise SplitError(f"class(es) {untrained} have no training image after the split: all their groups went to "
                         f"validation or test. Fix: lower split.test_fraction / split.val_fraction, or add data")
    return result


def assert_no_group_leakage(assignment: pd.DataFrame) -> None:
    """Raise :class:`LeakageError` naming the groups found in more than one split."""
    per_group = assignment.groupby("group_id")["split"].nunique()
    leaked = per_group[per_group > 1]
    if not leaked.empty:
        examples = ", ".join(map(str, leaked.index[:5]))
        raise LeakageError(f"{len(leaked)} group(s) appear in several splits, e.g. {examples}")


def class_counts(assignment: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Images per class (rows) and split (columns), zeros included."""
    table = pd.crosstab(assignment["label"], assignment["split"])
    return table.reindex(index=classes, columns=list(SPLITS), fill_value=0)

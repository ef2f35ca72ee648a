"""Group-aware, stratified, seeded train/val/test splits: no lesion or subject crosses a split."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

SPLITS = ("train", "val", "test")


class LeakageError(AssertionError):
    """A group (lesion, subject) appears in more than one split."""


def _hold_out(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a stratified, grouped hold-out of about ``fraction`` of the rows."""
    n_folds = max(2, int(round(1.0 / fraction)))
    n_groups = len(np.unique(groups))
    if n_groups < n_folds:
        raise ValueError(f"only {n_groups} groups: too few to hold out {fraction:.0%} by group")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    _, held_out = next(splitter.split(np.zeros(len(labels)), labels, groups))
    mask = np.zeros(len(labels), dtype=bool)
    mask[held_out] = True
    return mask


def split_manifest(manifest: pd.DataFrame, test_fraction: float, val_fraction: float, seed: int) -> pd.DataFrame:
    """Assign each image to train/val/test; returns ``image_id, group_id, label, split`` in manifest order.

    ``val_fraction`` is a fraction of the whole dataset. Groups stay whole; class proportions are
    kept as closely as the group sizes allow.
    """
    if not (0 < test_fraction < 1 and 0 < val_fraction < 1 and test_fraction + val_fraction < 1):
        raise ValueError(f"invalid split fractions test={test_fraction} val={val_fraction}")
    labels = manifest["label"].to_numpy()
    groups = manifest["group_id"].to_numpy()
    split = np.full(len(manifest), "train", dtype=object)
    test = _hold_out(labels, groups, test_fraction, seed)
    split[test] = "test"
    rest = np.flatnonzero(~test)
    val = _hold_out(labels[rest], groups[rest], val_fraction / (1.0 - test_fraction), seed + 1)
    split[rest[val]] = "val"
    result = manifest[["image_id", "group_id", "label"]].copy()
    result["split"] = split
    assert_no_group_leakage(result)
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

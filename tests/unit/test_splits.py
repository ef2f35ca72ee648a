import numpy as np
import pandas as pd
import pytest

from mobiledx.params import ParamsError, SplitParams
from mobiledx.splits import LeakageError, assert_no_group_leakage, class_counts, split_manifest


def grouped_manifest(seed: int = 0) -> pd.DataFrame:
    """300 images of ~150 groups (1-4 images each) over 3 imbalanced classes."""
    rng = np.random.default_rng(seed)
    rows, group = [], 0
    for label, n_groups in (("nv", 100), ("mel", 35), ("df", 15)):
        for _ in range(n_groups):
            for _ in range(rng.integers(1, 5)):
                rows.append({"image_id": f"img{len(rows):04d}", "group_id": f"g{group:04d}", "label": label})
            group += 1
    return pd.DataFrame(rows)


def test_no_group_crosses_splits_and_fractions_hold():
    manifest = grouped_manifest()
    assignment = split_manifest(manifest, SplitParams(test_fraction=0.2, val_fraction=0.15), seed=42)
    assert list(assignment["image_id"]) == list(manifest["image_id"])
    assert (assignment.groupby("group_id")["split"].nunique() == 1).all()
    fractions = assignment["split"].value_counts(normalize=True)
    assert fractions["test"] == pytest.approx(0.2, abs=0.05)
    assert fractions["val"] == pytest.approx(0.15, abs=0.05)
    counts = class_counts(assignment, ["nv", "mel", "df"])
    assert (counts > 0).all().all(), "every class in every split"
    # stratified: the minority class keeps roughly its share in the test split
    share = counts.loc["df", "test"] / counts["test"].sum()
    overall = (manifest["label"] == "df").mean()
    assert share == pytest.approx(overall, abs=0.05)


def test_split_is_seeded():
    manifest = grouped_manifest()
    first = split_manifest(manifest, SplitParams(), seed=7)
    again = split_manifest(manifest, SplitParams(), seed=7)
    other = split_manifest(manifest, SplitParams(), seed=8)
    assert first.equals(again)
    assert not first["split"].equals(other["split"])


def test_leakage_is_detected():
    assignment = pd.DataFrame({"image_id": ["a", "b", "c"], "group_id": ["g1", "g1", "g2"],
                               "label": ["x", "x", "y"], "split": ["train", "test", "train"]})
    with pytest.raises(LeakageError, match="g1"):
        assert_no_group_leakage(assignment)


@pytest.mark.parametrize("test_fraction,val_fraction", [(0.0, 0.1), (0.5, 0.5), (1.2, 0.1)])
def test_invalid_fractions_are_refused(test_fraction, val_fraction):
    with pytest.raises(ParamsError, match="must each be in"):
        split_manifest(grouped_manifest(), SplitParams(test_fraction=test_fraction, val_fraction=val_fraction), seed=0)


def test_too_few_groups_is_a_clear_error():
    manifest = pd.DataFrame({"image_id": list("abcd"), "group_id": ["g1", "g1", "g2", "g2"], "label": list("xxyy")})
    with pytest.raises(ValueError, match="too few"):
        split_manifest(manifest, SplitParams(test_fraction=0.2, val_fraction=0.1), seed=0)


def test_per_class_holds_out_whole_groups_until_n_images_per_class():
    manifest = grouped_manifest()
    assignment = split_manifest(manifest, SplitParams(method="per_class", test_per_class=10), seed=1)
    test_counts = assignment[assignment["split"] == "test"]["label"].value_counts()
    assert set(test_counts.index) == {"nv", "mel", "df"}
    assert ((test_counts >= 10) & (test_counts <= 13)).all()  # at most one group (≤ 4 images) past 10
    assert (assignment.groupby("group_id")["split"].nunique() == 1).all()


def test_per_class_refuses_a_class_too_small():
    manifest = grouped_manifest()
    with pytest.raises(ValueError, match="class 'df' has only"):
        split_manifest(manifest, SplitParams(method="per_class", test_per_class=500), seed=1)


def test_kfold_folds_partition_the_data():
    manifest = grouped_manifest()
    tests = [set(split_manifest(manifest, SplitParams(method="kfold", folds=3, fold=k), seed=5)
                 .query("split == 'test'")["image_id"]) for k in range(3)]
    assert set.union(*tests) == set(manifest["image_id"])
    assert sum(len(t) for t in tests) == len(manifest)
    with pytest.raises(ParamsError, match="split.fold"):
        split_manifest(manifest, SplitParams(method="kfold", folds=3, fold=3), seed=5)


def test_source_split_is_kept_and_leaks_are_refused():
    manifest = grouped_manifest()
    manifest["source_split"] = np.where(manifest["group_id"] < "g0030", "test", "train")
    assignment = split_manifest(manifest, SplitParams(method="source"), seed=0)
    assert (assignment["split"] == "test").equals(manifest["source_split"] == "test")
    assert (assignment["split"] == "val").any()
    manifest.loc[manifest.index[-1], "group_id"] = "g0000"  # a test group also in the source's train split
    with pytest.raises(LeakageError, match="g0000"):
        split_manifest(manifest, SplitParams(method="source"), seed=0)
    manifest["source_split"] = ""
    with pytest.raises(ValueError, match="no source test split"):
        split_manifest(manifest, SplitParams(method="source"), seed=0)


def test_source_val_split_is_used_when_present():
    manifest = grouped_manifest()
    manifest["source_split"] = np.select([manifest["group_id"] < "g0030", manifest["group_id"] < "g0060"],
                                         ["test", "val"], "train")
    assignment = split_manifest(manifest, SplitParams(method="source"), seed=0)
    assert (assignment["split"] == manifest["source_split"]).all()

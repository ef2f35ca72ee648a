import numpy as np
import pandas as pd
import pytest

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
    assignment = split_manifest(manifest, test_fraction=0.2, val_fraction=0.15, seed=42)
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
    first = split_manifest(manifest, 0.2, 0.15, seed=7)
    again = split_manifest(manifest, 0.2, 0.15, seed=7)
    other = split_manifest(manifest, 0.2, 0.15, seed=8)
    assert first.equals(again)
    assert not first["split"].equals(other["split"])


def test_leakage_is_detected():
    assignment = pd.DataFrame({"image_id": ["a", "b", "c"], "group_id": ["g1", "g1", "g2"],
                               "label": ["x", "x", "y"], "split": ["train", "test", "train"]})
    with pytest.raises(LeakageError, match="g1"):
        assert_no_group_leakage(assignment)


@pytest.mark.parametrize("test_fraction,val_fraction", [(0.0, 0.1), (0.5, 0.5), (1.2, 0.1)])
def test_invalid_fractions_are_refused(test_fraction, val_fraction):
    with pytest.raises(ValueError, match="fractions"):
        split_manifest(grouped_manifest(), test_fraction, val_fraction, seed=0)


def test_too_few_groups_is_a_clear_error():
    manifest = pd.DataFrame({"image_id": list("abcd"), "group_id": ["g1", "g1", "g2", "g2"], "label": list("xxyy")})
    with pytest.raises(ValueError, match="too few"):
        split_manifest(manifest, 0.2, 0.1, seed=0)

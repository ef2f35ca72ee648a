import numpy as np
import pandas as pd
import pytest

from mobiledx.params import ParamsError, SplitParams
from mobiledx.preparation.splits import (
    LeakageError,
    SplitError,
    _hold_out,
    assert_no_group_leakage,
    class_counts,
    split_manifest,
)


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
    with pytest.raises(SplitError, match=r"^split.method=source but the dataset has no source test split "
                                         r"\(source_split column is empty\). Fix: use split.method: fractions "
                                         r"\(or kfold / per_class\)$"):
        split_manifest(manifest, SplitParams(method="source"), seed=0)


def test_source_val_split_is_used_when_present():
    manifest = grouped_manifest()
    manifest["source_split"] = np.select([manifest["group_id"] < "g0030", manifest["group_id"] < "g0060"],
                                         ["test", "val"], "train")
    assignment = split_manifest(manifest, SplitParams(method="source"), seed=0)
    assert (assignment["split"] == manifest["source_split"]).all()


# --- stratification and grouping, checked against what an unstratified or ungrouped split would do -------------


def _share_distance(labels: pd.Series, overall: pd.Series) -> float:
    """Total variation distance between the class shares of ``labels`` and ``overall`` (0: identical shares)."""
    shares = labels.value_counts(normalize=True).reindex(overall.index, fill_value=0.0)
    return float((shares - overall).abs().sum() / 2)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_stratified_split_keeps_class_shares_closer_than_a_plain_group_split(seed):
    """The held-out splits' class shares are strictly closer to the data's than a plain (unstratified) group
    split's with the same seed and size: scikit-learn's GroupKFold for test (5 folds = 20 %), GroupShuffleSplit of
    the same size for validation. On this manifest the plain splits are 0.04-0.16 away (total variation), the
    stratified ones under 0.01, so a split that dropped stratification would be caught whatever the seed."""
    from sklearn.model_selection import GroupKFold, GroupShuffleSplit

    manifest = grouped_manifest()
    overall = manifest["label"].value_counts(normalize=True)
    assignment = split_manifest(manifest, SplitParams(test_fraction=0.2, val_fraction=0.15), seed=seed)
    test, val = assignment["split"] == "test", assignment["split"] == "val"

    _, plain_test = next(GroupKFold(n_splits=5, shuffle=True, random_state=seed)
                         .split(manifest, manifest["label"], manifest["group_id"]))
    rest = manifest[~test.to_numpy()]
    _, plain_val = next(GroupShuffleSplit(n_splits=1, test_size=val.sum() / len(rest), random_state=seed + 1)
                        .split(rest, rest["label"], rest["group_id"]))
    ours_test = _share_distance(manifest.loc[test.to_numpy(), "label"], overall)
    ours_val = _share_distance(manifest.loc[val.to_numpy(), "label"], overall)
    assert ours_test < _share_distance(manifest["label"].iloc[plain_test], overall)
    assert ours_val < _share_distance(rest["label"].iloc[plain_val], rest["label"].value_counts(normalize=True))
    assert max(ours_test, ours_val) < 0.02  # and close in absolute terms (a class's share off by < 2 points)


def _groups_in_several_splits(manifest: pd.DataFrame, assignment: pd.DataFrame) -> list[str]:
    """The manifest's groups (lesions, subjects) whose images ``assignment`` puts in more than one split; computed
    here from the manifest's own group ids, independently of
    :func:`mobiledx.preparation.splits.assert_no_group_leakage`."""
    split_of = dict(zip(assignment["image_id"], assignment["split"]))
    splits_per_group: dict[str, set] = {}
    for image_id, group in zip(manifest["image_id"], manifest["group_id"]):
        splits_per_group.setdefault(group, set()).add(split_of[image_id])
    return sorted(group for group, splits in splits_per_group.items() if len(splits) > 1)


@pytest.mark.parametrize("config", [SplitParams(test_fraction=0.2, val_fraction=0.15),
                                    SplitParams(method="per_class", test_per_class=10),
                                    SplitParams(method="kfold", folds=3, fold=1)],
                         ids=["fractions", "per_class", "kfold"])
def test_no_group_crosses_splits_even_without_the_runtime_check(monkeypatch, config):
    """Every method keeps each group whole, checked directly (the split's own leakage check is switched off, so a
    split that grouped by image would reach this assertion instead of stopping at that check)."""
    import mobiledx.preparation.splits

    monkeypatch.setattr(mobiledx.preparation.splits, "assert_no_group_leakage", lambda assignment: None)
    manifest = grouped_manifest()
    assert (manifest.groupby("group_id").size() > 1).sum() > 50  # many multi-image groups: a leak would show
    for seed in (0, 1, 2):
        assignment = split_manifest(manifest, config, seed=seed)
        assert set(assignment["split"]) == set(mobiledx.preparation.splits.SPLITS)
        assert _groups_in_several_splits(manifest, assignment) == []


def test_a_split_by_image_would_fail_the_group_check():
    """The check above is not vacuous: the same split with every image as its own group puts images of one
    lesion in different splits, and the check names them."""
    manifest = grouped_manifest()
    by_image = split_manifest(manifest.assign(group_id=manifest["image_id"]), SplitParams(), seed=0)
    crossing = _groups_in_several_splits(manifest, by_image)
    assert len(crossing) > 10
    with pytest.raises(LeakageError):
        assert_no_group_leakage(by_image.assign(group_id=manifest["group_id"]))


# --- found by mutation testing (benchmarks/mutation.py) --------------------------------------------------------


def test_class_counts_list_every_class_and_split_in_order_with_zeros():
    assignment = pd.DataFrame({"image_id": list("abc"), "group_id": list("abc"), "label": ["mel", "nv", "nv"],
                               "split": ["train", "train", "test"]})
    counts = class_counts(assignment, ["nv", "df", "mel"])
    assert counts.index.tolist() == ["nv", "df", "mel"] and counts.columns.tolist() == ["train", "val", "test"]
    assert counts.to_numpy().tolist() == [[1, 0, 1], [0, 0, 0], [1, 0, 0]]


def test_per_class_split_is_seeded():
    manifest = grouped_manifest()
    config = SplitParams(method="per_class", test_per_class=10)
    assert split_manifest(manifest, config, seed=3).equals(split_manifest(manifest, config, seed=3))


def single_image_groups(n: int = 1200) -> pd.DataFrame:
    """``n`` images, one per group, in 3 classes of 50/30/20 %: fine enough for fractions to land within 1 %."""
    labels = np.repeat(["nv", "mel", "df"], [n // 2, n * 3 // 10, n - n // 2 - n * 3 // 10])
    return pd.DataFrame({"image_id": [f"img{i:05d}" for i in range(n)], "group_id": [f"g{i:05d}" for i in range(n)],
                         "label": labels})


# A hold-out is one of round(1 / share) folds: these shares are whole numbers of folds (val: 0.1 / 0.8 = 1/8,
# 0.15 / 0.75 = 1/5, 0.3 / 0.9 = 1/3), so the fractions are met to the rounding of fold sizes.
@pytest.mark.parametrize(("test_fraction", "val_fraction"), [(0.2, 0.1), (0.25, 0.15), (0.1, 0.3)])
def test_validation_and_test_are_the_fractions_of_the_whole_dataset(test_fraction, val_fraction):
    """val_fraction is of the whole dataset, not of what the test split left (0.1 of 0.8 would be 0.08)."""
    assignment = split_manifest(single_image_groups(), SplitParams(test_fraction=test_fraction,
                                                                   val_fraction=val_fraction), seed=3)
    shares = assignment["split"].value_counts(normalize=True)
    assert shares["test"] == pytest.approx(test_fraction, abs=0.01)
    assert shares["val"] == pytest.approx(val_fraction, abs=0.01)


def test_a_class_left_without_training_images_is_a_clear_error():
    """Its only group went to test or validation: the model could never learn it."""
    manifest = pd.concat([single_image_groups(300), pd.DataFrame({"image_id": ["rare1", "rare2"],
                                                                  "group_id": ["one", "one"], "label": "vasc"})])
    outcomes = set()
    for seed in range(12):
        try:
            assignment = split_manifest(manifest, SplitParams(method="per_class", test_per_class=2), seed=seed)
            outcomes.add("train" if (assignment.loc[assignment["label"] == "vasc", "split"] == "train").all() else "?")
        except Exception as error:  # noqa: BLE001 - the message is what is checked
            assert "class(es) ['vasc'] have no training image after the split" in str(error)
            outcomes.add("error")
    assert outcomes == {"error"}  # per_class takes whole groups until 2 test images of every class: vasc's only one


@pytest.mark.parametrize("per_class", [1, 2, 5])
def test_per_class_takes_exactly_the_images_asked_when_groups_are_single_images(per_class):
    assignment = split_manifest(single_image_groups(60), SplitParams(method="per_class", test_per_class=per_class),
                                seed=4)
    assert assignment.loc[assignment["split"] == "test", "label"].value_counts().to_dict() == {
        "nv": per_class, "mel": per_class, "df": per_class}


def test_a_half_hold_out_is_half_and_needs_no_more_groups_than_its_two_folds():
    labels = np.repeat(["nv", "mel"], 20)
    held = _hold_out(labels, np.arange(40), 0.5, seed=1)
    assert held.sum() == 20 and (labels[held] == "nv").sum() == 10
    assert _hold_out(np.array(["nv", "nv"]), np.array(["a", "b"]), 0.5, seed=1).sum() == 1  # 2 groups, 2 folds
    with pytest.raises(SplitError, match=r"^only 1 groups .*: too few to hold out 50% by group"):
        _hold_out(np.array(["nv", "nv"]), np.array(["a", "a"]), 0.5, seed=1)


def test_a_validation_share_above_half_of_the_rest_is_held_out_as_a_half():
    """val 0.45 of the whole is 0.5625 of what test left: a hold-out is at least 1 of 2 folds, and says so."""
    manifest = single_image_groups(40).assign(group_id=lambda frame: np.where(frame.index < 30, frame["group_id"], "g"))
    manifest["source_split"] = np.where(manifest.index < 30, "test", "")
    with pytest.raises(SplitError, match="too few to hold out 50% by group"):
        split_manifest(manifest, SplitParams(method="source", test_fraction=0.2, val_fraction=0.45), seed=0)


def test_a_leak_names_how_many_groups_and_the_first_five():
    assignment = pd.DataFrame({"group_id": [f"g{i}" for i in range(7)] * 2, "split": ["train"] * 7 + ["test"] * 7})
    with pytest.raises(LeakageError) as caught:
        assert_no_group_leakage(assignment)
    assert str(caught.value) == "7 group(s) appear in several splits, e.g. g0, g1, g2, g3, g4"

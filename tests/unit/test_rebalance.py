import pandas as pd
import pytest

from mobiledx.rebalance import balanced_class_weights, rebalance

HAM10000_COUNTS = {"akiec": 327, "bcc": 514, "bkl": 1099, "df": 115, "mel": 1113, "nv": 6705, "vasc": 142}


def test_balanced_weights_equal_the_known_ham10000_values():
    labels = pd.Series([c for c, n in HAM10000_COUNTS.items() for _ in range(n)])
    weights = balanced_class_weights(labels, list(HAM10000_COUNTS))
    expected = {"akiec": 4.375, "bcc": 2.783, "bkl": 1.302, "df": 12.441, "mel": 1.285, "nv": 0.213, "vasc": 10.075}
    assert weights == pytest.approx(expected, abs=5e-4)


def training_split() -> pd.DataFrame:
    labels = ["a"] * 12 + ["b"] * 5 + ["c"] * 2
    return pd.DataFrame({"image_id": [f"i{k}" for k in range(len(labels))], "label": labels})


def test_class_weight_keeps_every_image_once():
    index, weights = rebalance(training_split(), ["a", "b", "c"], "class_weight", seed=0)
    assert sorted(index["image_id"]) == sorted(training_split()["image_id"])
    assert weights["c"] == pytest.approx(19 / (3 * 2))
    # weighted class totals are equal: the loss sees balanced classes
    totals = index["label"].map(weights).groupby(index["label"]).sum()
    assert totals.min() == pytest.approx(totals.max())


def test_oversample_evens_classes_with_training_images_only():
    train = training_split()
    index, weights = rebalance(train, ["a", "b", "c"], "oversample", seed=3)
    assert index["label"].value_counts().to_dict() == {"a": 12, "b": 12, "c": 12}
    assert set(index["image_id"]) == set(train["image_id"])
    assert set(weights.values()) == {1.0}
    again, _ = rebalance(train, ["a", "b", "c"], "oversample", seed=3)
    assert index.equals(again)


def test_unknown_method_and_empty_class_are_refused():
    with pytest.raises(ValueError, match="rebalance.method"):
        rebalance(training_split(), ["a", "b", "c"], "smote-ish", seed=0)
    with pytest.raises(ValueError, match=r"\['d'\]"):
        rebalance(training_split(), ["a", "b", "c", "d"], "class_weight", seed=0)

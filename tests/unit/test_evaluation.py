import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from mobiledx.evaluation import (
    bootstrap_intervals,
    classification_metrics,
    expected_calibration_error,
    isic_challenge_frame,
    predictions_frame,
    reliability_table,
    subgroup_metrics,
)

CLASSES = ["a", "b", "c"]
Y_TRUE = np.array([0, 0, 1, 1, 2, 2, 0, 0])
# argmax predictions: 0, 1, 1, 1, 2, 0, 0, 0
PROBS = np.array([
    [0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1],
    [0.1, 0.2, 0.7], [0.5, 0.1, 0.4], [0.9, 0.05, 0.05], [0.6, 0.3, 0.1],
])


def test_metrics_match_hand_computed_values():
    m = classification_metrics(Y_TRUE, PROBS, CLASSES)
    assert m["accuracy"] == pytest.approx(6 / 8)
    # recalls: a 3/4, b 2/2, c 1/2
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 + 1 / 2) / 3)
    assert m["per_class"]["a"]["sensitivity"] == pytest.approx(3 / 4)
    # class a negatives: 4 images, one (c predicted a) is a false positive
    assert m["per_class"]["a"]["specificity"] == pytest.approx(3 / 4)
    assert m["per_class"]["c"]["specificity"] == pytest.approx(1.0)
    assert m["confusion_matrix"] == [[3, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["baseline_majority_accuracy"] == pytest.approx(4 / 8)
    assert m["baseline_majority_balanced_accuracy"] == pytest.approx(1 / 3)


def test_metrics_match_scikit_learn():
    m = classification_metrics(Y_TRUE, PROBS, CLASSES)
    y_pred = PROBS.argmax(1)
    assert m["f1_macro"] == pytest.approx(skm.f1_score(Y_TRUE, y_pred, average="macro"))
    assert m["precision_macro"] == pytest.approx(skm.precision_score(Y_TRUE, y_pred, average="macro"))
    assert m["roc_auc_macro"] == pytest.approx(skm.roc_auc_score(Y_TRUE, PROBS, multi_class="ovr", average="macro"))


def test_binary_auc_uses_the_positive_column():
    y = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    m = classification_metrics(y, probs, ["hem", "all"])
    assert m["roc_auc_macro"] == pytest.approx(skm.roc_auc_score(y, probs[:, 1]))


def test_predictions_frame_lists_every_image():
    frame = predictions_frame(pd.Series([f"x{i}" for i in range(8)]), Y_TRUE, PROBS, CLASSES)
    assert list(frame.columns) == ["image_id", "actual", "predicted", "p_a", "p_b", "p_c"]
    assert frame.loc[5, "actual"] == "c" and frame.loc[5, "predicted"] == "a"


def test_per_class_ppv_npv_f1_auc():
    per_class = classification_metrics(Y_TRUE, PROBS, CLASSES)["per_class"]
    assert per_class["a"]["ppv"] == pytest.approx(3 / 4) and per_class["a"]["npv"] == pytest.approx(3 / 4)
    assert per_class["b"]["ppv"] == pytest.approx(2 / 3) and per_class["b"]["npv"] == pytest.approx(1.0)
    assert per_class["c"]["f1"] == pytest.approx(2 / 3)
    assert per_class["b"]["roc_auc"] == pytest.approx(skm.roc_auc_score(Y_TRUE == 1, PROBS[:, 1]))
    assert per_class["a"]["average_precision"] == pytest.approx(skm.average_precision_score(Y_TRUE == 0, PROBS[:, 0]))


def test_expected_calibration_error_by_hand():
    # confidences .8 .6 .7 .8 .7 .5 .9 .6; wrong at .6 and .5 -> bins: .5 (acc 0), .6 (acc .5), .7/.8/.9 (acc 1)
    assert expected_calibration_error(Y_TRUE, PROBS) == pytest.approx((0.5 + 2 * 0.1 + 2 * 0.3 + 2 * 0.2 + 0.1) / 8)
    table = reliability_table(Y_TRUE, PROBS)
    assert list(table["count"]) == [1, 2, 2, 2, 1] and table["count"].sum() == 8


def test_bootstrap_intervals_are_seeded_and_bracket_the_estimate():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    probs = rng.dirichlet(np.ones(3), 300)
    probs[np.arange(300), y] += 0.6
    probs /= probs.sum(axis=1, keepdims=True)
    intervals = bootstrap_intervals(y, probs, samples=200, seed=1)
    assert intervals == bootstrap_intervals(y, probs, samples=200, seed=1)
    point = classification_metrics(y, probs, CLASSES)
    for name in ("accuracy", "balanced_accuracy", "roc_auc_macro"):
        assert intervals[name]["low"] < point[name] < intervals[name]["high"]
    narrow = bootstrap_intervals(np.tile(y, 4), np.tile(probs, (4, 1)), samples=200, seed=1)["accuracy"]
    assert narrow["high"] - narrow["low"] < intervals["accuracy"]["high"] - intervals["accuracy"]["low"]


def test_subgroups_report_balanced_accuracy_and_sensitivity_with_counts():
    metadata = pd.DataFrame({"sex": ["male", "male", "female", "female", "male", "female", "unknown", "male"],
                             "age": [25.0, 35.0, 55.0, float("nan"), 75.0, 45.0, 60.0, 20.0],
                             "site": ["back"] * 8})
    table = subgroup_metrics(metadata, Y_TRUE, PROBS, CLASSES).set_index(["attribute", "value"])
    male = table.loc[("sex", "male")]  # rows 0, 1, 4, 7: a, a, c, a -> predicted a, b, c, a
    assert male["n"] == 4 and male["n_a"] == 3 and male["sensitivity_a"] == pytest.approx(2 / 3)
    assert male["sensitivity_c"] == pytest.approx(1.0) and pd.isna(male["sensitivity_b"])  # no b among them
    assert male["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert table.loc[("age_band", "unknown"), "n"] == 1 and table.loc[("age_band", "<30"), "n"] == 2
    assert table.loc[("site", "back"), "balanced_accuracy"] == pytest.approx(classification_metrics(
        Y_TRUE, PROBS, CLASSES)["balanced_accuracy"])


def test_subgroups_at_the_operating_point_use_the_threshold_not_the_argmax():
    metadata = pd.DataFrame({"sex": ["male", "male", "female", "female", "male", "female", "unknown", "male"],
                             "age": [25.0] * 8, "site": ["back"] * 8})
    # class c at threshold 0.5: p(c) is 0.7 for the male c (row 4), 0.4 for the female c (row 5), <= 0.1 elsewhere
    table = subgroup_metrics(metadata, Y_TRUE, PROBS, CLASSES, operating=(2, 0.5)).set_index(["attribute", "value"])
    male, female = table.loc[("sex", "male")], table.loc[("sex", "female")]
    assert (male["op_n_positive"], male["op_sensitivity"], male["op_specificity"]) == (1, 1.0, 1.0)
    assert (female["op_n_positive"], female["op_sensitivity"], female["op_specificity"]) == (1, 0.0, 1.0)
    assert pd.isna(table.loc[("sex", "unknown"), "op_sensitivity"])  # no c there: undefined, not 0


def test_isic_challenge_format():
    probs = np.tile(np.arange(1, 8) / 28.0, (2, 1))
    classes = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    frame = isic_challenge_frame(pd.Series(["ISIC_0000001", "ISIC_0000002"]), probs, classes)
    assert list(frame.columns) == ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    assert frame.loc[0, "MEL"] == pytest.approx(5 / 28, abs=1e-6) and frame.loc[0, "AKIEC"] == pytest.approx(
        1 / 28, abs=1e-6
    )
    with pytest.raises(ValueError, match="HAM10000"):
        isic_challenge_frame(pd.Series(["x"]), np.ones((1, 2)) / 2, ["all", "hem"])


@pytest.mark.parametrize("target", ["balanced_accuracy", "auc"])
def test_isic_csv_round_trips_through_the_official_scorer(monkeypatch, target):
    """The ISIC-format predictions, scored by `isic-challenge-scoring`, give our balanced accuracy and macro AUC."""
    import io

    monkeypatch.setattr(pd.DataFrame, "applymap", pd.DataFrame.map, raising=False)  # the scorer predates pandas 3
    from isic_challenge_scoring import ClassificationMetric, ClassificationScore

    from mobiledx.evaluation import ISIC_COLUMNS

    classes = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(7), 10)
    probabilities = rng.dirichlet(np.ones(7), len(y))
    probabilities[np.arange(len(y)), y] += 0.2
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    ids = pd.Series([f"ISIC_{i:07d}" for i in range(len(y))])
    truth = pd.DataFrame({"image": ids})
    for name, column in ISIC_COLUMNS.items():
        truth[column] = (y == classes.index(name)).astype(float)
    predictions = isic_challenge_frame(ids, probabilities, classes).to_csv(index=False)
    metric = ClassificationMetric(target)
    score = ClassificationScore.from_stream(io.StringIO(truth.to_csv(index=False)), io.StringIO(predictions), metric)
    ours = classification_metrics(y, probabilities, classes)
    expected = ours["balanced_accuracy"] if target == "balanced_accuracy" else ours["roc_auc_macro"]
    assert score.overall == pytest.approx(expected, abs=1e-5)  # probabilities are rounded to 6 decimals


def test_confusion_matrix_is_reported_in_counts_and_row_normalised():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    probabilities = np.eye(3)[[0, 0, 1, 1, 1, 0]]
    metrics = classification_metrics(y_true, probabilities, ["a", "b", "c"])
    assert metrics["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert metrics["confusion_matrix_normalised"] == [[0.6667, 0.3333, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]

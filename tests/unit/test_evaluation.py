import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from mobiledx.evaluation.classification import (
    bootstrap_intervals,
    classification_metrics,
    expected_calibration_error,
    isic_challenge_frame,
    predictions_frame,
    reliability_table,
    subgroup_metrics,
)
from mobiledx.evaluation.intervals import percentile_intervals

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

    from mobiledx.evaluation.classification import ISIC_COLUMNS

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


# --- an imbalanced case, where accuracy, balanced accuracy, macro and weighted averages all differ --------------

# 6 a, 3 b, 1 c. Predicted: every a as a; b as a, a, b; the c as b.
IMBALANCED_TRUE = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2])
IMBALANCED_PROBS = np.array([
    [0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.55, 0.25, 0.2], [0.5, 0.3, 0.2],
    [0.6, 0.35, 0.05], [0.45, 0.4, 0.15], [0.3, 0.6, 0.1],
    [0.2, 0.5, 0.3],
])


def test_imbalanced_metrics_separate_accuracy_from_balanced_accuracy_and_macro_from_weighted():
    m = classification_metrics(IMBALANCED_TRUE, IMBALANCED_PROBS, CLASSES)
    # confusion (rows true a, b, c; columns predicted): a [6, 0, 0], b [2, 1, 0], c [0, 1, 0]
    assert m["confusion_matrix"] == [[6, 0, 0], [2, 1, 0], [0, 1, 0]]
    assert m["n_images"] == 10
    assert m["accuracy"] == pytest.approx(7 / 10)  # 6 + 1 + 0 correct of 10
    # recalls a 6/6, b 1/3, c 0/1 -> (1 + 1/3 + 0) / 3 = 4/9 (plain accuracy would be 0.7)
    assert m["balanced_accuracy"] == pytest.approx(4 / 9)
    assert m["recall_macro"] == pytest.approx(4 / 9)
    assert m["recall_weighted"] == pytest.approx((6 * 1 + 3 * (1 / 3) + 1 * 0) / 10)  # = 7/10, as always = accuracy
    # precisions: a 6/(6+2) = 3/4, b 1/(1+1) = 1/2, c 0/0 -> 0 (zero_division=0)
    assert m["precision_macro"] == pytest.approx((3 / 4 + 1 / 2 + 0) / 3)  # 5/12
    assert m["precision_weighted"] == pytest.approx((6 * 3 / 4 + 3 * 1 / 2 + 1 * 0) / 10)  # (4.5 + 1.5) / 10 = 0.6
    # F1 = 2TP / (2TP + FP + FN): a 12/(12+2+0) = 6/7, b 2/(2+1+2) = 2/5, c 0/(0+0+1) = 0
    assert m["f1_macro"] == pytest.approx((6 / 7 + 2 / 5 + 0) / 3)  # 44/105
    assert m["f1_weighted"] == pytest.approx((6 * 6 / 7 + 3 * 2 / 5 + 1 * 0) / 10)  # 111/175
    # the majority class is a: always predicting it is right 6/10 times, recalls 1, 0, 0 -> 1/3
    assert m["baseline_majority_accuracy"] == pytest.approx(6 / 10)
    assert m["baseline_majority_balanced_accuracy"] == pytest.approx(1 / 3)


def test_imbalanced_per_class_figures_by_hand():
    per_class = classification_metrics(IMBALANCED_TRUE, IMBALANCED_PROBS, CLASSES)["per_class"]
    # a: TP 6, FN 0, FP 2 (two b), TN 2 (one b and the c predicted b)
    assert per_class["a"] == pytest.approx({
        "support": 6, "sensitivity": 1.0, "specificity": 2 / 4, "ppv": 6 / 8, "npv": 2 / 2, "f1": 12 / 14,
        # a's scores: a images 0.9 0.8 0.7 0.6 0.55 0.5, others 0.6 0.45 0.3 0.2: of the 6 x 4 pairs, the
        # 0.5 and 0.55 rank below 0.6 (2 pairs lost), 0.6 ties 0.6 (half a pair) -> (24 - 2 - 0.5) / 24
        "roc_auc": 21.5 / 24, "average_precision": per_class["a"]["average_precision"]})
    # b: TP 1, FN 2, FP 1 (the c), TN 6
    assert (per_class["b"]["sensitivity"], per_class["b"]["specificity"]) == pytest.approx((1 / 3, 6 / 7))
    assert (per_class["b"]["ppv"], per_class["b"]["npv"]) == pytest.approx((1 / 2, 6 / 8))
    # c: TP 0, FN 1, FP 0, TN 9: no positive prediction -> PPV undefined, F1 = 0
    assert per_class["c"]["sensitivity"] == 0.0 and per_class["c"]["specificity"] == 1.0
    assert per_class["c"]["ppv"] is None and per_class["c"]["npv"] == pytest.approx(9 / 10)
    assert per_class["c"]["f1"] == 0.0 and per_class["c"]["support"] == 1


def test_bootstrap_balanced_accuracy_is_not_plain_accuracy():
    """On 30 copies of the imbalanced case (accuracy 0.7, balanced accuracy 4/9), each interval brackets its own
    statistic and the two do not overlap."""
    y, probs = np.tile(IMBALANCED_TRUE, 30), np.tile(IMBALANCED_PROBS, (30, 1))
    intervals = bootstrap_intervals(y, probs, samples=200, seed=3)
    assert intervals["accuracy"]["low"] < 0.7 < intervals["accuracy"]["high"]
    assert intervals["balanced_accuracy"]["low"] < 4 / 9 < intervals["balanced_accuracy"]["high"]
    assert intervals["balanced_accuracy"]["high"] < intervals["accuracy"]["low"]


def test_subgroup_balanced_accuracy_is_not_plain_accuracy():
    metadata = pd.DataFrame({"sex": ["female"] * 10, "age": [40.0] * 10, "site": ["back"] * 10})
    row = subgroup_metrics(metadata, IMBALANCED_TRUE, IMBALANCED_PROBS, CLASSES).set_index("attribute").loc["sex"]
    assert row["n"] == 10 and row["balanced_accuracy"] == pytest.approx(4 / 9)  # accuracy would be 0.7
    assert (row["n_a"], row["n_b"], row["n_c"]) == (6, 3, 1)
    assert (row["sensitivity_a"], row["sensitivity_b"], row["sensitivity_c"]) == pytest.approx((1.0, 1 / 3, 0.0))


# --- age bands: every edge lands in the band its name documents ("<30", "30-49", "50-69", "70+") -------------

EDGE_AGES = {0.0: "<30", 29.0: "<30", 29.99: "<30", 30.0: "30-49", 49.99: "30-49", 50.0: "50-69", 69.99: "50-69",
             70.0: "70+", 85.0: "70+", 199.0: "70+"}


@pytest.mark.parametrize("age,band", EDGE_AGES.items())
def test_age_band_edges(age, band):
    from mobiledx.evaluation.classification import age_band

    assert age_band(age) == band


def test_subgroup_table_puts_band_edge_ages_in_the_documented_band():
    ages = [29.0, 30.0, 49.0, 50.0, 69.0, 70.0, 30.0, 50.0, float("nan"), 70.0]
    metadata = pd.DataFrame({"sex": ["male"] * 10, "age": ages, "site": ["back"] * 10})
    table = subgroup_metrics(metadata, IMBALANCED_TRUE, IMBALANCED_PROBS, CLASSES)
    counts = table[table["attribute"] == "age_band"].set_index("value")["n"].to_dict()
    # <30: 29; 30-49: 30, 49, 30; 50-69: 50, 69, 50; 70+: 70, 70; unknown: NaN
    assert counts == {"<30": 1, "30-49": 3, "50-69": 3, "70+": 2, "unknown": 1}
    # the band of the two 70-year-olds: images 5 (a, predicted a) and 9 (c, predicted b)
    seventy = table.set_index(["attribute", "value"]).loc[("age_band", "70+")]
    assert (seventy["n_a"], seventy["n_c"], seventy["sensitivity_a"], seventy["sensitivity_c"]) == (1, 1, 1.0, 0.0)


# --- found by mutation testing (benchmarks/mutation.py): figures the tests above left unchecked ----------------


def test_a_class_absent_from_truth_and_predictions_still_counts_in_the_macro_averages():
    # truth a a a b, predicted a a b b; c never occurs: confusion a [2, 1, 0], b [0, 1, 0], c [0, 0, 0]
    y_true = np.array([0, 0, 0, 1])
    probabilities = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1]])
    m = classification_metrics(y_true, probabilities, CLASSES)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 0], [0, 0, 0]]
    # precisions a 2/2, b 1/2, c 0/0 -> 0: macro over all three classes (1 + 1/2 + 0) / 3, not over the two seen
    assert m["precision_macro"] == pytest.approx(1 / 2)
    # recalls a 2/3, b 1/1, c 0/0 -> 0: (2/3 + 1 + 0) / 3 = 5/9; balanced accuracy averages the classes present
    # in the truth only (scikit-learn's definition): (2/3 + 1) / 2 = 5/6
    assert m["recall_macro"] == pytest.approx(5 / 9) and m["balanced_accuracy"] == pytest.approx(5 / 6)
    c = m["per_class"]["c"]
    assert c["support"] == 0 and c["sensitivity"] is None and c["roc_auc"] is None and c["average_precision"] is None
    assert m["per_class"]["a"]["roc_auc"] == pytest.approx(1.0)  # a's 0.7 0.6 0.3 all above b's 0.2



def test_a_class_never_predicted_or_absent_from_a_subgroup_gives_its_figures_without_a_warning():
    """0/0 is defined (precision 0, no sensitivity), not a warning in the stage's output for every run."""
    y_true, probabilities = np.array([0, 0, 0, 1]), np.array([[0.7, 0.2, 0.1]] * 3 + [[0.2, 0.7, 0.1]])
    metadata = pd.DataFrame({"sex": ["female"] * 3 + ["male"], "age": [40.0] * 4, "site": ["back"] * 4})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn's UndefinedMetricWarning, numpy's mean of an empty slice
        m = classification_metrics(y_true, probabilities, CLASSES)
        table = subgroup_metrics(metadata, y_true, probabilities, CLASSES).set_index(["attribute", "value"])
    assert m["precision_macro"] == pytest.approx(2 / 3)  # a 3/3, b 1/1, c 0/0 -> 0
    male = table.loc[("sex", "male")]
    assert male["n_a"] == 0 and np.isnan(male["sensitivity_a"]) and male["sensitivity_b"] == 1.0

# confidences 0.80 (right), 0.89 (wrong), 1.00 (right), 0.55 (right): 10 bins put 0.80 and 0.89 together (bin 8),
# 1.00 in the last bin (9), 0.55 in bin 5
ECE_TRUE = np.array([0, 1, 0, 0])
ECE_PROBS = np.array([[0.8, 0.2], [0.89, 0.11], [1.0, 0.0], [0.55, 0.45]])


def test_reliability_bins_and_calibration_error_by_hand():
    table = reliability_table(ECE_TRUE, ECE_PROBS)
    assert table["bin_low"].tolist() == pytest.approx([0.5, 0.8, 0.9])
    assert table["bin_high"].tolist() == pytest.approx([0.6, 0.9, 1.0])
    assert table["count"].tolist() == [1, 2, 1]
    assert table["confidence"].tolist() == pytest.approx([0.55, 0.845, 1.0])
    assert table["accuracy"].tolist() == pytest.approx([1.0, 0.5, 1.0])
    # (1 x |1 - 0.55| + 2 x |0.5 - 0.845| + 1 x |1 - 1|) / 4 = (0.45 + 0.69) / 4
    assert expected_calibration_error(ECE_TRUE, ECE_PROBS) == pytest.approx(0.285)
    assert classification_metrics(ECE_TRUE, ECE_PROBS, ["a", "b"])["expected_calibration_error"] == pytest.approx(
        0.285)
    # one bin: |accuracy 3/4 - mean confidence 3.24/4| = 0.06
    assert expected_calibration_error(ECE_TRUE, ECE_PROBS, bins=1) == pytest.approx(0.06)
    assert expected_calibration_error(np.array([1]), np.array([[0.8, 0.2]])) == pytest.approx(0.8)  # one image
    empty = reliability_table(np.array([], dtype=int), np.zeros((0, 2)))  # no image: no bin, same columns
    assert empty.empty and list(empty.columns) == ["bin_low", "bin_high", "count", "confidence", "accuracy"]


def test_percentile_intervals_by_hand():
    values = [float(v) for v in range(101)]  # the p-th percentile of 0..100 is p
    assert percentile_intervals({"x": values})["x"] == pytest.approx({"low": 2.5, "high": 97.5})
    assert percentile_intervals({"x": values}, level=0.5)["x"] == pytest.approx({"low": 25.0, "high": 75.0})
    assert percentile_intervals({"x": []}) == {"x": {"low": None, "high": None}}


def test_bootstrap_resamples_every_image_and_uses_the_level():
    # two images, the first right and the second wrong: resamples of only the first (1 in 4) have accuracy 1
    y, probs = np.array([0, 1]), np.array([[0.9, 0.1], [0.9, 0.1]])
    assert bootstrap_intervals(y, probs, samples=200, seed=0)["accuracy"] == {"low": 0.0, "high": 1.0}
    y, probs = np.tile(IMBALANCED_TRUE, 30), np.tile(IMBALANCED_PROBS, (30, 1))
    wide = bootstrap_intervals(y, probs, samples=200, seed=3)["accuracy"]
    narrow = bootstrap_intervals(y, probs, samples=200, seed=3, level=0.5)["accuracy"]
    assert wide["low"] < narrow["low"] < narrow["high"] < wide["high"]


def test_subgroups_below_min_count_are_left_out_one_by_one():
    # sorted values: "female" (1 image, left out at min_count 2), then "male" (9 images, kept)
    metadata = pd.DataFrame({"sex": ["female"] + ["male"] * 9, "age": [40.0] * 10, "site": ["back"] * 10})
    table = subgroup_metrics(metadata, IMBALANCED_TRUE, IMBALANCED_PROBS, CLASSES, min_count=2)
    assert table[table["attribute"] == "sex"]["value"].tolist() == ["male"]


def test_probabilities_are_written_rounded_to_six_decimals():
    probs = np.full((1, 7), 1 / 7)
    classes = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    assert isic_challenge_frame(pd.Series(["ISIC_0000001"]), probs, classes).loc[0, "MEL"] == round(1 / 7, 6)
    frame = predictions_frame(pd.Series(["x"]), np.array([0]), np.array([[1 / 3, 1 / 3, 1 / 3]]), CLASSES)
    assert frame.loc[0, ["p_a", "p_b", "p_c"]].tolist() == [round(1 / 3, 6)] * 3


def test_the_headline_metric_set_is_defined_once_and_read_by_every_report(monkeypatch):
    """Adding a metric to SPLIT_METRICS (and its bootstrap statistic) is all it takes for evaluate's CIs, the DVC
    headline, the logged model's linked metrics and the model card to carry it; compare, cv, seeds and release
    list every headline metric as the runs log it."""
    from mobiledx.evaluation import classification, headline
    from mobiledx.release import modelcard, publish
    from mobiledx.tracking import comparison, crossval, seeds

    logged = {f"{split}_{key}" for split in ("val", "test") for key in headline.SPLIT_METRICS}
    assert logged <= set(crossval.CV_METRICS) & set(seeds.SEED_METRICS) & set(publish.RELEASE_METRICS)
    assert logged <= {name for names in comparison.COMPARE_COLUMNS.values() for name in names}

    monkeypatch.setitem(headline.SPLIT_METRICS, "top2_accuracy", "top-2 accuracy")
    monkeypatch.setitem(classification._STATISTICS, "top2_accuracy", lambda y, p: float(
        np.mean((np.argsort(p, axis=1)[:, -2:] == y[:, None]).any(axis=1))))
    y = np.array([0, 1, 2, 2])
    probabilities = np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.1, 0.2, 0.7], [0.4, 0.5, 0.1]])
    assert set(classification.bootstrap_intervals(y, probabilities, samples=20, seed=0)) == set(headline.SPLIT_METRICS)
    split = {"accuracy": 0.5, "balanced_accuracy": 0.5, "roc_auc_macro": 0.8, "top2_accuracy": 0.75,
             "expected_calibration_error": 0.1}
    assert headline.evaluation_headline(split, split, None)["val_top2_accuracy"] == 0.75
    linked = headline.linked_metrics({"int8": {}}, split, split, {}, "int8")
    assert linked["test_top2_accuracy"] == linked["val_top2_accuracy"] == 0.75
    summary = modelcard._split_summary({**split, "confidence_intervals_95": {}}, ["a", "b", "c"])
    assert summary["top2_accuracy"]["value"] == 0.75
    assert any("top-2 accuracy" in line for line in modelcard._headline_table(summary))

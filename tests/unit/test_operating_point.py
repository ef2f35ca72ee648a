"""Operating point: threshold choice on hand-computed examples, metrics, bootstrap and errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mobiledx.errors import MobiledxError
from mobiledx.evaluation.operating_point import (
    OperatingPoint,
    OperatingPointError,
    bootstrap_at_threshold,
    choose_threshold,
    metrics_at_threshold,
    operating_report,
)

POSITIVE = 2  # the class of interest; labels 0 and 1 are both negatives
# 5 positives and 7 negatives. Sorted by score (P = positive, N = negative):
# 0.95P 0.90N 0.85P 0.70P 0.60N 0.50N 0.40P 0.30N 0.20P 0.15N 0.10N 0.05N
Y = np.array([2, 2, 2, 2, 2, 0, 1, 0, 1, 0, 1, 0])
S = np.array([0.95, 0.85, 0.70, 0.40, 0.20, 0.90, 0.60, 0.50, 0.30, 0.15, 0.10, 0.05])


def _sens(threshold: float) -> float:
    return metrics_at_threshold(Y, S, positive=POSITIVE, threshold=threshold)["sensitivity"]


def _spec(threshold: float) -> float:
    return metrics_at_threshold(Y, S, positive=POSITIVE, threshold=threshold)["specificity"]


def test_sensitivity_target_is_the_highest_threshold_that_meets_it():
    # sensitivity >= 0.8 needs 4 of 5 positives at or above t: the 4th highest positive score, 0.40
    t = choose_threshold(Y, S, positive=POSITIVE, target_metric="sensitivity", target_value=0.8)
    assert t == 0.40
    assert _sens(t) == 0.8
    assert _spec(t) == 4 / 7  # 0.90, 0.60, 0.50 are false positives
    # the next higher candidate (0.50) misses the target: 3 of 5
    assert _sens(0.50) == 0.6 < 0.8


def test_sensitivity_target_one_is_the_lowest_positive_score():
    t = choose_threshold(Y, S, positive=POSITIVE, target_metric="sensitivity", target_value=1.0)
    assert t == 0.20
    assert _sens(t) == 1.0
    assert _sens(0.30) == 0.8


def test_specificity_target_is_the_lowest_threshold_that_meets_it():
    # specificity >= 0.9 with 7 negatives needs all 7 below t: above the highest negative (0.90), so 0.95
    t = choose_threshold(Y, S, positive=POSITIVE, target_metric="specificity", target_value=0.9)
    assert t == 0.95
    assert _spec(t) == 1.0
    assert _sens(t) == 0.2
    # the next lower candidate (0.90) misses the target: 6 of 7
    assert _spec(0.90) == 6 / 7 < 0.9

    # specificity >= 0.8 needs 6 of 7 below t: one false positive (0.90) allowed, so t = 0.70
    t = choose_threshold(Y, S, positive=POSITIVE, target_metric="specificity", target_value=0.8)
    assert t == 0.70
    assert _spec(t) == 6 / 7
    assert _sens(t) == 0.6
    assert _spec(0.60) == 5 / 7 < 0.8


def test_specificity_never_positive_when_the_top_score_is_a_negative():
    y = np.array([1, 0, 0])
    s = np.array([0.3, 0.9, 0.1])
    t = choose_threshold(y, s, positive=1, target_metric="specificity", target_value=1.0)
    assert t == np.nextafter(0.9, np.inf)
    assert t > 0.9
    m = metrics_at_threshold(y, s, positive=1, threshold=t)
    assert (m["tp"], m["fp"], m["specificity"], m["sensitivity"]) == (0, 0, 1.0, 0.0)


def test_ties_count_as_positive():
    # score >= threshold is positive, so tied scores move together
    y = np.array([1, 0, 1, 0])
    s = np.array([0.5, 0.5, 0.2, 0.1])
    assert choose_threshold(y, s, positive=1, target_metric="sensitivity", target_value=0.5) == 0.5
    assert choose_threshold(y, s, positive=1, target_metric="specificity", target_value=0.5) == 0.2


def test_metrics_at_threshold_hand_counted():
    m = metrics_at_threshold(Y, S, positive=POSITIVE, threshold=0.40)
    assert m == {
        "threshold": 0.40,
        "sensitivity": 4 / 5,
        "specificity": 4 / 7,
        "ppv": 4 / 7,
        "npv": 4 / 5,
        "tp": 4,
        "fp": 3,
        "tn": 4,
        "fn": 1,
        "n_positive": 5,
        "n_negative": 7,
        "referred_fraction": 7 / 12,
    }
    assert all(type(m[k]) is int for k in ("tp", "fp", "tn", "fn", "n_positive", "n_negative"))
    assert all(type(m[k]) is float for k in ("threshold", "sensitivity", "specificity", "ppv", "npv"))


def test_metrics_undefined_ratios_are_none():
    m = metrics_at_threshold(Y, S, positive=POSITIVE, threshold=0.99)  # nobody referred
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (0, 0, 7, 5)
    assert m["ppv"] is None
    assert m["npv"] == 7 / 12
    assert m["sensitivity"] == 0.0
    assert m["referred_fraction"] == 0.0

    m = metrics_at_threshold(np.array([0, 1, 0]), np.array([0.1, 0.8, 0.4]), positive=2, threshold=0.5)
    assert m["sensitivity"] is None  # no image of class 2
    assert m["specificity"] == 2 / 3
    assert m["ppv"] == 0.0


def _random_example(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    s = np.clip(rng.normal(0.3, 0.2, n) + 0.35 * (y == 1), 0.0, 1.0)
    return y, s


def test_bootstrap_is_seeded_and_brackets_the_point_estimate():
    y, s = _random_example()
    point = metrics_at_threshold(y, s, positive=1, threshold=0.5)
    a = bootstrap_at_threshold(y, s, positive=1, threshold=0.5, samples=300, seed=7)
    b = bootstrap_at_threshold(y, s, positive=1, threshold=0.5, samples=300, seed=7)
    c = bootstrap_at_threshold(y, s, positive=1, threshold=0.5, samples=300, seed=8)
    assert a == b
    assert a != c
    assert set(a) == {"sensitivity", "specificity", "ppv", "npv"}
    for name, interval in a.items():
        assert 0.0 <= interval["low"] <= point[name] <= interval["high"] <= 1.0
        assert interval["low"] < interval["high"]
    wide = bootstrap_at_threshold(y, s, positive=1, threshold=0.5, samples=300, seed=7, level=0.99)
    assert wide["sensitivity"]["low"] <= a["sensitivity"]["low"]
    assert wide["sensitivity"]["high"] >= a["sensitivity"]["high"]


def test_bootstrap_undefined_ratios_are_none():
    y = np.array([0, 0, 1, 1, 0])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    result = bootstrap_at_threshold(y, s, positive=2, threshold=0.35, samples=50, seed=0)
    assert result["sensitivity"] == {"low": None, "high": None}  # no image of class 2 at all
    assert result["npv"] == {"low": 1.0, "high": 1.0}  # every resample's negatives are true negatives
    assert result["ppv"] == {"low": 0.0, "high": 0.0}
    result = bootstrap_at_threshold(y, s, positive=1, threshold=0.9, samples=50, seed=0)
    assert result["ppv"] == {"low": None, "high": None}  # nobody is ever referred
    assert result["specificity"] == {"low": 1.0, "high": 1.0}


def test_no_positive_for_sensitivity_target_names_the_fix():
    with pytest.raises(OperatingPointError, match="both kinds; use more data or another class") as caught:
        choose_threshold(
            np.array([0, 1, 0]), np.array([0.1, 0.2, 0.3]), positive=2, target_metric="sensitivity", target_value=0.9
        )
    assert "class index 2" in str(caught.value)
    assert isinstance(caught.value, MobiledxError)


def test_no_negative_for_specificity_target_names_the_fix():
    with pytest.raises(OperatingPointError, match="use more data or another class"):
        choose_threshold(
            np.array([1, 1]), np.array([0.1, 0.2]), positive=1, target_metric="specificity", target_value=0.9
        )


@pytest.mark.parametrize("target", [0.0, 1.5, -0.1, float("nan")])
def test_target_value_out_of_range_is_refused(target):
    with pytest.raises(OperatingPointError, match=r"\(0, 1\]"):
        choose_threshold(Y, S, positive=POSITIVE, target_metric="sensitivity", target_value=target)


def test_unknown_target_metric_is_refused():
    with pytest.raises(OperatingPointError, match="sensitivity, specificity"):
        choose_threshold(Y, S, positive=POSITIVE, target_metric="ppv", target_value=0.9)


def test_operating_point_is_frozen():
    point = OperatingPoint(class_name="MEL", target_metric="sensitivity", target_value=0.95, threshold=0.12)
    assert point.threshold == 0.12
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.threshold = 0.5  # type: ignore[misc]


def test_the_report_chooses_on_validation_and_reports_test_at_that_threshold():
    """Validation and test are separate: the threshold comes from validation only, test is measured at it."""
    classes = ["akiec", "bcc", "mel"]
    probabilities = np.zeros((len(S), 3))
    probabilities[:, POSITIVE] = S
    probabilities[:, 0] = 1 - S
    # test: 3 melanomas scored 0.45, 0.35, 0.9; 3 others 0.5, 0.2, 0.39
    test_true = np.array([2, 2, 2, 0, 1, 1])
    test_scores = np.array([0.45, 0.35, 0.90, 0.50, 0.20, 0.39])
    test_probabilities = np.stack([1 - test_scores, np.zeros(6), test_scores], axis=1)
    report = operating_report(classes, "mel", target_metric="sensitivity", target_value=0.8,
                              validation=(Y, probabilities), test=(test_true, test_probabilities),
                              samples=200, seed=7)
    assert report["threshold"] == 0.40 and report["chosen_on"] == "validation"  # as on validation alone
    assert report["validation"]["sensitivity"] == 0.8  # meets the target where it was chosen
    # test at 0.40, counted by hand: TP 0.45, 0.90; FN 0.35; FP 0.50; TN 0.20, 0.39
    test = report["test"]
    assert (test["tp"], test["fn"], test["fp"], test["tn"]) == (2, 1, 1, 2)
    assert test["sensitivity"] == 2 / 3 and test["specificity"] == 2 / 3
    assert test["ppv"] == 2 / 3 and test["npv"] == 2 / 3
    bounds = report["test_confidence_intervals_95"]["sensitivity"]
    assert 0.0 <= bounds["low"] <= 2 / 3 <= bounds["high"] <= 1.0
    point = OperatingPoint.from_report(report)
    assert point.describe() == "refer when p(mel) >= 0.4 (chosen for sensitivity >= 0.8 on the validation split)"
    assert OperatingPoint.from_report({}) is None


def test_the_report_names_the_classes_when_the_class_of_interest_is_unknown():
    probabilities = np.full((len(S), 3), 1 / 3)
    with pytest.raises(OperatingPointError, match=r"'melanoma' is not a class .*akiec, bcc, mel.*operating_class"):
        operating_report(["akiec", "bcc", "mel"], "melanoma", target_metric="sensitivity", target_value=0.9,
                         validation=(Y, probabilities), test=(Y, probabilities), samples=10, seed=0)


# --- found by mutation testing (benchmarks/mutation.py) --------------------------------------------------------


def test_bootstrap_counts_a_score_equal_to_the_threshold_as_referred():
    # every image scores exactly the threshold: every positive is referred in every resample (sensitivity 1),
    # every negative too (specificity 0)
    y, s = np.array([1, 0, 1, 0]), np.full(4, 0.5)
    result = bootstrap_at_threshold(y, s, positive=1, threshold=0.5, samples=50, seed=0)
    assert result["sensitivity"] == {"low": 1.0, "high": 1.0} and result["specificity"] == {"low": 0.0, "high": 0.0}


def test_bootstrap_resamples_every_image_and_uses_the_level():
    # two positives, only the first referred: resamples of only the first (1 in 4) have sensitivity 1
    y, s = np.array([1, 1]), np.array([0.9, 0.1])
    assert bootstrap_at_threshold(y, s, positive=1, threshold=0.5, samples=200, seed=0)["sensitivity"] == {
        "low": 0.0, "high": 1.0}
    y, s = _random_example()
    wide = bootstrap_at_threshold(y, s, positive=1, threshold=0.5, samples=300, seed=7)["sensitivity"]
    narrow = bootstrap_at_threshold(y, s, positive=1, threshold=0.5, samples=300, seed=7, level=0.5)["sensitivity"]
    assert wide["low"] < narrow["low"] < narrow["high"] < wide["high"]


def test_the_report_is_seeded():
    probabilities = np.stack([1 - S, np.zeros(len(S)), S], axis=1)
    reports = [operating_report(["akiec", "bcc", "mel"], "mel", target_metric="sensitivity", target_value=0.8,
                                validation=(Y, probabilities), test=(Y, probabilities), samples=50, seed=3)
               for _ in range(2)]
    assert reports[0] == reports[1]


def test_float32_scores_are_compared_with_the_threshold_in_double_precision():
    """A model's float32 0.9 is 0.8999999762: below a 0.9 threshold, as the release page (JavaScript doubles)
    reads it; compared in float32 (NumPy's rule for a float32 array and a Python float) it would be referred."""
    scores, truth = np.array([0.9, 0.2], dtype=np.float32), np.array([POSITIVE, 1 - POSITIVE])
    at = metrics_at_threshold(truth, scores, positive=POSITIVE, threshold=0.9)
    assert (at["tp"], at["fn"], at["referred_fraction"]) == (0, 1, 0.0)
    assert metrics_at_threshold(truth, scores, positive=POSITIVE, threshold=float(np.float32(0.9)))["tp"] == 1


def test_column_vectors_are_read_as_one_score_per_image():
    flat = metrics_at_threshold(Y, S, positive=POSITIVE, threshold=0.5)
    assert metrics_at_threshold(Y[:, None], S[:, None], positive=POSITIVE, threshold=0.5) == flat
    assert metrics_at_threshold(Y, S[:, None], positive=POSITIVE, threshold=0.5) == flat


def test_bad_scores_are_refused_with_a_message():
    with pytest.raises(ValueError, match="y_true has 12 labels but scores has 11 values"):
        metrics_at_threshold(Y, S[:-1], positive=POSITIVE, threshold=0.5)
    with pytest.raises(ValueError, match=r"^scores contain NaN or infinite values$"):
        metrics_at_threshold(Y, np.where(S > 0.9, np.nan, S), positive=POSITIVE, threshold=0.5)
    with pytest.raises(OperatingPointError, match=r"^operating-point target sensitivity >= 1.5 is not possible; use a "
                                                  r"target value in \(0, 1\], e.g. 0.95$"):
        choose_threshold(Y, S, positive=POSITIVE, target_metric="sensitivity", target_value=1.5)

"""The clinical operating point: a decision threshold on p(class of interest), e.g. "refer if p(melanoma) >= t".

The threshold is chosen on the validation split to meet a target sensitivity or specificity, then reported on the
test split with :func:`metrics_at_threshold` and :func:`bootstrap_at_threshold`. An image is "positive" (referred)
when its score is ``>= threshold``; every image whose label is not ``positive`` counts as a negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mobiledx.errors import MobiledxError
from mobiledx.evaluation.intervals import percentile_intervals

TARGET_METRICS = ("sensitivity", "specificity")

_BOTH_KINDS_FIX = "the validation split needs images of both kinds; use more data or another class"


class OperatingPointError(MobiledxError):
    """The target cannot be met (the class is absent, or the target is out of range); the message names the fix."""


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold chosen to meet ``target_metric >= target_value`` for ``class_name``."""

    class_name: str
    target_metric: str  # "sensitivity" or "specificity"
    target_value: float  # e.g. 0.95
    threshold: float  # predict "positive" (refer) when p(class) >= threshold

    def describe(self) -> str:
        """One line for people: the rule and how it was chosen."""
        return (f"refer when p({self.class_name}) >= {self.threshold:.4g} (chosen for {self.target_metric} >= "
                f"{self.target_value:g} on the validation split)")

    @classmethod
    def from_report(cls, report: dict) -> OperatingPoint | None:
        """The operating point of an :func:`operating_report` (``None`` for an empty report)."""
        if not report:
            return None
        return cls(report["class"], report["target_metric"], float(report["target_value"]), float(report["threshold"]))


def _as_arrays(y_true: np.ndarray, scores: np.ndarray, positive: int) -> tuple[np.ndarray, np.ndarray]:
    """(is_positive bool (N,), scores float (N,)), checked for matching length and finite scores."""
    truth = np.asarray(y_true).reshape(-1)
    values = np.asarray(scores, dtype=float).reshape(-1)
    if truth.shape != values.shape:
        raise ValueError(f"y_true has {truth.size} labels but scores has {values.size} values")
    if not np.all(np.isfinite(values)):
        raise ValueError("scores contain NaN or infinite values")
    return truth == positive, values


def _ratio(numerator: int, denominator: int) -> float | None:
    return float(numerator / denominator) if denominator else None


def _counts(is_positive: np.ndarray, predicted: np.ndarray) -> tuple[int, int, int, int]:
    """(TP, FP, TN, FN) of the boolean predictions ``predicted`` against the truth ``is_positive``."""
    return (int(np.sum(predicted & is_positive)), int(np.sum(predicted & ~is_positive)),
            int(np.sum(~predicted & ~is_positive)), int(np.sum(~predicted & is_positive)))


def _rates(tp: int, fp: int, tn: int, fn: int) -> dict[str, float | None]:
    """Sensitivity, specificity, PPV and NPV of these counts (``None`` where the denominator is zero)."""
    return {"sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp),
            "ppv": _ratio(tp, tp + fp), "npv": _ratio(tn, tn + fn)}


def choose_threshold(
    y_true: np.ndarray, scores: np.ndarray, *, positive: int, target_metric: str, target_value: float
) -> float:
    """The threshold on ``scores`` (p(class ``positive``)) that meets ``target_metric >= target_value`` best.

    ``"sensitivity"``: the highest distinct score whose sensitivity meets the target (specificity as high as
    possible). ``"specificity"``: the lowest distinct score whose specificity meets the target (sensitivity as high
    as possible), or ``np.nextafter(max score, inf)`` ("never positive") when no score does.
    """
    if target_metric not in TARGET_METRICS:
        raise OperatingPointError(
            f"unknown operating-point target {target_metric!r}; use one of {', '.join(TARGET_METRICS)}"
        )
    if not 0.0 < float(target_value) <= 1.0:
        raise OperatingPointError(
            f"operating-point target {target_metric} >= {target_value} is not possible; "
            "use a target value in (0, 1], e.g. 0.95"
        )
    is_positive, values = _as_arrays(y_true, scores, positive)
    candidates = np.unique(values)  # ascending
    if target_metric == "sensitivity":
        pos_scores = np.sort(values[is_positive])
        if pos_scores.size == 0:
            raise OperatingPointError(
                f"cannot choose a threshold for sensitivity >= {target_value}: no image of class index {positive} "
                f"among {values.size} validation images; {_BOTH_KINDS_FIX}"
            )
        # positives with score >= t, for every candidate t; non-increasing in t
        tp = pos_scores.size - np.searchsorted(pos_scores, candidates, side="left")
        sensitivity = tp / pos_scores.size
        meets = np.flatnonzero(sensitivity >= target_value)
        return float(candidates[meets[-1]])  # the lowest score always meets it (sensitivity 1)
    neg_scores = np.sort(values[~is_positive])
    if neg_scores.size == 0:
        raise OperatingPointError(
            f"cannot choose a threshold for specificity >= {target_value}: every one of the {values.size} "
            f"validation images is of class index {positive}; {_BOTH_KINDS_FIX}"
        )
    # negatives with score < t, for every candidate t; non-decreasing in t
    tn = np.searchsorted(neg_scores, candidates, side="left")
    specificity = tn / neg_scores.size
    meets = np.flatnonzero(specificity >= target_value)
    if meets.size:
        return float(candidates[meets[0]])
    return float(np.nextafter(candidates[-1], np.inf))  # never positive: specificity 1


def metrics_at_threshold(y_true: np.ndarray, scores: np.ndarray, *, positive: int, threshold: float) -> dict:
    """Confusion counts and sensitivity, specificity, PPV, NPV, referred fraction at ``score >= threshold``.

    A ratio with a zero denominator is ``None``; counts are python ints, ratios python floats.
    """
    is_positive, values = _as_arrays(y_true, scores, positive)
    tp, fp, tn, fn = _counts(is_positive, values >= threshold)
    return {
        "threshold": float(threshold),
        **_rates(tp, fp, tn, fn),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "n_positive": tp + fn,
        "n_negative": tn + fp,
        "referred_fraction": _ratio(tp + fp, values.size),
    }


def bootstrap_at_threshold(
    y_true: np.ndarray,
    scores: np.ndarray,
    *,
    positive: int,
    threshold: float,
    samples: int,
    seed: int,
    level: float = 0.95,
) -> dict[str, dict[str, float | None]]:
    """Seeded percentile bootstrap CIs (resampling images) of sensitivity, specificity, PPV, NPV at ``threshold``.

    A resample where a ratio is undefined is skipped for that ratio; a ratio never defined gets ``None`` bounds.
    """
    is_positive, values = _as_arrays(y_true, scores, positive)
    predicted = values >= threshold
    n = values.size
    rng = np.random.default_rng(seed)
    statistics: dict[str, list[float]] = {"sensitivity": [], "specificity": [], "ppv": [], "npv": []}
    for _ in range(samples):
        pick = rng.integers(0, n, n)
        for name, value in _rates(*_counts(is_positive[pick], predicted[pick])).items():
            if value is not None:
                statistics[name].append(value)
    return percentile_intervals(statistics, level)


def operating_report(
    classes: list[str],
    class_name: str,
    *,
    target_metric: str,
    target_value: float,
    validation: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    samples: int,
    seed: int,
) -> dict:
    """The operating point of ``class_name``: threshold chosen on ``validation`` (labels, probabilities), figures
    on both splits at that threshold, and the test figures' bootstrap 95 % CIs."""
    if class_name not in classes:
        raise OperatingPointError(
            f"evaluate.operating_class {class_name!r} is not a class of this dataset ({', '.join(classes)}). "
            f"Fix: set it to one of them in params.yaml (per dataset: datasets.<name>.evaluate.operating_class)"
        )
    positive = classes.index(class_name)
    (val_true, val_probabilities), (test_true, test_probabilities) = validation, test
    threshold = choose_threshold(val_true, val_probabilities[:, positive], positive=positive,
                                 target_metric=target_metric, target_value=target_value)
    test_scores = test_probabilities[:, positive]
    return {
        "class": class_name,
        "target_metric": target_metric,
        "target_value": float(target_value),
        "threshold": threshold,
        "chosen_on": "validation",
        "validation": metrics_at_threshold(val_true, val_probabilities[:, positive], positive=positive,
                                           threshold=threshold),
        "test": metrics_at_threshold(test_true, test_scores, positive=positive, threshold=threshold),
        "test_confidence_intervals_95": bootstrap_at_threshold(test_true, test_scores, positive=positive,
                                                               threshold=threshold, samples=samples, seed=seed),
    }

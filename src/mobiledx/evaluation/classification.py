"""Metrics of a split (validation or test): accuracy, balanced accuracy, macro P/R/F1, per-class figures, AUC."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from mobiledx.evaluation.headline import SPLIT_METRICS
from mobiledx.evaluation.intervals import percentile_intervals
from mobiledx.evaluation.operating_point import metrics_at_threshold


def classification_metrics(y_true: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """All headline metrics for integer labels ``y_true`` and an (N, C) probability matrix.

    Also reports the majority-class baseline (always predict the most frequent test class), whose
    balanced accuracy is 1/C, so every number has its floor next to it.
    """
    y_true = np.asarray(y_true)
    y_pred = probabilities.argmax(axis=1)
    labels = np.arange(len(classes))
    confusion = skm.confusion_matrix(y_true, y_pred, labels=labels)
    result: dict[str, Any] = {
        "n_images": int(len(y_true)),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
        "roc_auc_macro": macro_roc_auc(y_true, probabilities),
        "expected_calibration_error": expected_calibration_error(y_true, probabilities),
    }
    for average in ("macro", "weighted"):
        kwargs = dict(labels=labels, average=average, zero_division=0)
        result[f"precision_{average}"] = float(skm.precision_score(y_true, y_pred, **kwargs))
        result[f"recall_{average}"] = float(skm.recall_score(y_true, y_pred, **kwargs))
        result[f"f1_{average}"] = float(skm.f1_score(y_true, y_pred, **kwargs))
    majority = np.bincount(y_true, minlength=len(classes)).argmax()
    baseline = np.full_like(y_true, majority)
    result["baseline_majority_accuracy"] = float(skm.accuracy_score(y_true, baseline))
    result["baseline_majority_balanced_accuracy"] = float(skm.balanced_accuracy_score(y_true, baseline))
    total = confusion.sum()
    per_class = {}
    for i, name in enumerate(classes):
        tp = confusion[i, i]
        fn = confusion[i].sum() - tp
        fp = confusion[:, i].sum() - tp
        tn = total - tp - fn - fp
        positives = y_true == i
        both_present = positives.any() and not positives.all()
        per_class[name] = {
            "support": int(confusion[i].sum()),
            "sensitivity": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp),
            "ppv": _ratio(tp, tp + fp),
            "npv": _ratio(tn, tn + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "roc_auc": float(skm.roc_auc_score(positives, probabilities[:, i])) if both_present else None,
            "average_precision": float(skm.average_precision_score(positives, probabilities[:, i]))
            if both_present
            else None,
        }
    result["per_class"] = per_class
    result["confusion_matrix"] = confusion.tolist()
    result["confusion_matrix_normalised"] = (
        (confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)).round(4).tolist()
    )
    return result


def macro_roc_auc(y_true: np.ndarray, probabilities: np.ndarray) -> float | None:
    """One-vs-rest ROC-AUC averaged over classes present in ``y_true`` (None if fewer than two)."""
    present = np.unique(y_true)
    if len(present) < 2:
        return None
    if probabilities.shape[1] == 2:
        return float(skm.roc_auc_score(y_true, probabilities[:, 1]))
    scores = [skm.roc_auc_score(y_true == c, probabilities[:, c]) for c in present]
    return float(np.mean(scores))


def expected_calibration_error(y_true: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """Top-label ECE: bin by confidence, average |accuracy − confidence| weighted by bin size."""
    table = reliability_table(y_true, probabilities, bins)
    return float((table["count"] * (table["accuracy"] - table["confidence"]).abs()).sum() / max(len(y_true), 1))


def reliability_table(y_true: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Per confidence bin (equal width on [0, 1]): count, mean confidence and accuracy of the top label."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(y_true)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    rows = [
        {
            "bin_low": b / bins,
            "bin_high": (b + 1) / bins,
            "count": int((index == b).sum()),
            "confidence": float(confidence[index == b].mean()),
            "accuracy": float(correct[index == b].mean()),
        }
        for b in range(bins)
        if (index == b).any()
    ]
    return pd.DataFrame(rows, columns=["bin_low", "bin_high", "count", "confidence", "accuracy"])


def _balanced_accuracy(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    with warnings.catch_warnings():  # a resample may miss a class: that is what resampling does
        warnings.simplefilter("ignore")
        return float(skm.balanced_accuracy_score(y_true, probabilities.argmax(axis=1)))


# each headline metric computed from labels and scores, for the bootstrap
_STATISTICS = {
    "accuracy": lambda y_true, probabilities: float(np.mean(y_true == probabilities.argmax(axis=1))),
    "balanced_accuracy": _balanced_accuracy,
    "roc_auc_macro": macro_roc_auc,
}


def bootstrap_intervals(
    y_true: np.ndarray, probabilities: np.ndarray, samples: int, seed: int, level: float = 0.95
) -> dict[str, dict[str, float | None]]:
    """Seeded percentile bootstrap CIs (resampling test images) for each of the headline :data:`SPLIT_METRICS`."""
    y_true = np.asarray(y_true)
    rng = np.random.default_rng(seed)
    statistics: dict[str, list[float]] = {key: [] for key in SPLIT_METRICS}
    for _ in range(samples):
        pick = rng.integers(0, len(y_true), len(y_true))
        for key in SPLIT_METRICS:
            value = _STATISTICS[key](y_true[pick], probabilities[pick])
            if value is not None:  # a resample may miss a class: no AUC for it
                statistics[key].append(value)
    return percentile_intervals(statistics, level)


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator else None


def predictions_frame(
    image_ids: pd.Series, y_true: np.ndarray, probabilities: np.ndarray, classes: list[str]
) -> pd.DataFrame:
    """One row per test image: id, actual and predicted class, and each class's probability."""
    frame = pd.DataFrame({"image_id": image_ids.to_numpy()})
    frame["actual"] = [classes[i] for i in y_true]
    frame["predicted"] = [classes[i] for i in probabilities.argmax(axis=1)]
    for i, name in enumerate(classes):
        frame[f"p_{name}"] = probabilities[:, i].round(6)
    return frame


AGE_BANDS = [(0, 30, "<30"), (30, 50, "30-49"), (50, 70, "50-69"), (70, 200, "70+")]
ISIC_COLUMNS = {"mel": "MEL", "nv": "NV", "bcc": "BCC", "akiec": "AKIEC", "bkl": "BKL", "df": "DF", "vasc": "VASC"}


def age_band(age: float) -> str:
    if age != age:  # NaN
        return "unknown"
    return next(name for low, high, name in AGE_BANDS if low <= age < high)


def subgroup_metrics(
    metadata: pd.DataFrame, y_true: np.ndarray, probabilities: np.ndarray, classes: list[str], min_count: int = 1,
    operating: tuple[int, float] | None = None,
) -> pd.DataFrame:
    """Balanced accuracy and per-class sensitivity by sex, age band and site, with counts.

    ``metadata`` holds the test images' ``sex``, ``age`` and ``site`` in the order of ``y_true``.
    Subgroups with fewer than ``min_count`` images are left out; single-valued attributes
    (e.g. C-NMC has no metadata) give one row. With ``operating = (class index, threshold)``, each
    row also gives the sensitivity and specificity of "p(class) >= threshold" (``op_sensitivity``,
    ``op_specificity``).
    """

    y_true = np.asarray(y_true)
    y_pred = probabilities.argmax(axis=1)
    attributes = {
        "sex": metadata["sex"].to_numpy(),
        "age_band": metadata["age"].map(age_band).to_numpy(),
        "site": metadata["site"].to_numpy(),
    }
    rows = []
    for attribute, values in attributes.items():
        for value in sorted(set(values)):
            mask = values == value
            if mask.sum() < min_count:
                continue
            row = {"attribute": attribute, "value": value, "n": int(mask.sum())}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row["balanced_accuracy"] = float(skm.balanced_accuracy_score(y_true[mask], y_pred[mask]))
            for i, name in enumerate(classes):
                positives = mask & (y_true == i)
                row[f"n_{name}"] = int(positives.sum())
                row[f"sensitivity_{name}"] = float((y_pred[positives] == i).mean()) if positives.any() else None
            if operating is not None:
                at = metrics_at_threshold(y_true[mask], probabilities[mask, operating[0]], positive=operating[0],
                                          threshold=operating[1])
                row.update({"op_n_positive": at["n_positive"], "op_sensitivity": at["sensitivity"],
                            "op_specificity": at["specificity"]})
            rows.append(row)
    return pd.DataFrame(rows)


def isic_challenge_frame(image_ids: pd.Series, probabilities: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Predictions in the ISIC 2018 Task 3 format (``image, MEL, NV, BCC, AKIEC, BKL, DF, VASC``)."""
    missing = sorted(set(ISIC_COLUMNS) - set(classes))
    if missing:
        raise ValueError(f"ISIC format needs the HAM10000 classes; missing {missing}")
    frame = pd.DataFrame({"image": image_ids.to_numpy()})
    for name, column in ISIC_COLUMNS.items():
        frame[column] = probabilities[:, classes.index(name)].round(6)
    return frame

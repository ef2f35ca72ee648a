"""Test-split metrics: accuracy, balanced accuracy, macro P/R/F1, per-class sensitivity/specificity, AUC."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm


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
        "n_test": int(len(y_true)),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
        "precision_macro": float(skm.precision_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "recall_macro": float(skm.recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "f1_macro": float(skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "roc_auc_macro": macro_roc_auc(y_true, probabilities),
    }
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
        per_class[name] = {
            "support": int(confusion[i].sum()),
            "sensitivity": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp),
        }
    result["per_class"] = per_class
    result["confusion_matrix"] = confusion.tolist()
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


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator else None


def predictions_frame(image_ids: pd.Series, y_true: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per test image: id, actual and predicted class, and each class's probability."""
    frame = pd.DataFrame({"image_id": image_ids.to_numpy()})
    frame["actual"] = [classes[i] for i in y_true]
    frame["predicted"] = [classes[i] for i in probabilities.argmax(axis=1)]
    for i, name in enumerate(classes):
        frame[f"p_{name}"] = probabilities[:, i].round(6)
    return frame

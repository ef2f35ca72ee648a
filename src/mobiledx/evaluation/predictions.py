"""One split's predictions as evaluate uses them: the scores, their calibration, the metrics and their MLflow names."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mobiledx.data.cache import IngestedDataset
from mobiledx.evaluation.calibration import (
    apply_temperature,
    expected_ece_if_calibrated,
    fit_temperature,
    held_out_temperature_gain,
    negative_log_likelihood,
)
from mobiledx.evaluation.classification import bootstrap_intervals, classification_metrics, expected_calibration_error
from mobiledx.evaluation.operating_point import operating_report
from mobiledx.models.inference import predict_probabilities
from mobiledx.params import Params


@dataclass
class SplitPredictions:
    """One split as the model sees it: ids, manifest rows, true class indices, probabilities (calibrated by
    :func:`calibrate_splits`; ``uncalibrated`` keeps the trained model's own)."""

    frame: pd.DataFrame
    rows: np.ndarray
    y_true: np.ndarray
    probabilities: np.ndarray
    uncalibrated: np.ndarray


def predict_split(model, data: IngestedDataset, split: str, encoder, batch_size: int) -> SplitPredictions:
    """The model's scores on one split of ``data`` (patient metadata encoded by ``encoder`` if the model takes it)."""
    frame = data.split(split)
    rows = data.rows(frame["image_id"])
    metadata = encoder.transform(data.manifest.iloc[rows]) if encoder else None
    probabilities = predict_probabilities(model, data.images, rows, batch_size, metadata=metadata)
    return SplitPredictions(frame, rows, data.class_indices(frame["label"]), probabilities, probabilities)


def calibrate_splits(method: str, val: SplitPredictions, test: SplitPredictions, seed: int) -> dict:
    """Fit the temperature on ``val`` when it generalises (``method`` "temperature"; "none" keeps T = 1) and
    put the calibrated scores in both splits' ``probabilities``; returns ``calibration.json``: T, whether it
    was applied and why, and per split the expected calibration error and negative log-likelihood before
    and after, the ECE a perfectly calibrated model would show on that many images, top-class changes (0).

    A temperature is applied only if, cross-validated within the validation split, it lowers the held-out
    NLL (:func:`mobiledx.evaluation.calibration.held_out_temperature_gain`): on a small validation split with few
    mistakes, a fitted T describes those few images and makes the test scores worse."""
    report: dict = {"method": method, "fitted_on": "validation", "fitted_on_images": int(len(val.y_true)),
                    "applied": False, "temperature": 1.0}
    if method == "temperature":
        gain = held_out_temperature_gain(val.y_true, val.uncalibrated, seed=seed)
        report["cross_validated_nll"] = gain
        if gain["nll_fitted"] < gain["nll_as_trained"]:
            report.update(applied=True, temperature=fit_temperature(val.y_true, val.uncalibrated))
        else:
            report["reason"] = (f"not applied: a temperature fitted on 4/5 of the validation split gave the other "
                                f"fifth a higher negative log-likelihood ({gain['nll_fitted']:.4f} vs "
                                f"{gain['nll_as_trained']:.4f} as trained), so on this split it would fit noise")
    for name, split in (("validation", val), ("test", test)):
        if report["applied"]:
            split.probabilities = apply_temperature(split.uncalibrated, report["temperature"])
        report[name] = {
            "ece_before": expected_calibration_error(split.y_true, split.uncalibrated),
            "ece_after": expected_calibration_error(split.y_true, split.probabilities),
            "ece_if_perfectly_calibrated": expected_ece_if_calibrated(split.probabilities, seed=seed),
            "nll_before": negative_log_likelihood(split.y_true, split.uncalibrated),
            "nll_after": negative_log_likelihood(split.y_true, split.probabilities),
            "top_class_changes": int(np.sum(split.uncalibrated.argmax(1) != split.probabilities.argmax(1))),
        }
    return report


def split_metrics(split: SplitPredictions, classes: list[str], params: Params) -> dict:
    """The split's metrics (on the calibrated scores), the ECE as trained, and bootstrap 95 % CIs."""
    metrics = classification_metrics(split.y_true, split.probabilities, classes)
    metrics["expected_calibration_error_uncalibrated"] = expected_calibration_error(split.y_true, split.uncalibrated)
    metrics["confidence_intervals_95"] = bootstrap_intervals(
        split.y_true, split.probabilities, samples=params.evaluate.bootstrap_samples, seed=params.seed
    )
    return metrics


def operating_point(params: Params, classes: list[str], val: SplitPredictions, test: SplitPredictions) -> dict:
    """The operating point chosen on validation and reported on test (``{}`` without ``evaluate.operating_class``)."""
    setting = params.evaluate
    if not setting.operating_class:
        return {}
    return operating_report(
        classes, setting.operating_class, target_metric=setting.operating_target,
        target_value=setting.operating_value, validation=(val.y_true, val.probabilities),
        test=(test.y_true, test.probabilities), samples=setting.bootstrap_samples, seed=params.seed,
    )


def _scalars(prefix: str, metrics: dict) -> dict[str, float]:
    """MLflow metric names of one split's metrics: ``<prefix>_accuracy``, ``<prefix>_sensitivity_mel``, CIs."""
    scalars = {f"{prefix}_{k}": v for k, v in metrics.items() if isinstance(v, float)}
    for class_name, per_class in metrics["per_class"].items():
        scalars.update({f"{prefix}_{stat}_{class_name}": v for stat, v in per_class.items() if isinstance(v, float)})
    for metric, bounds in metrics["confidence_intervals_95"].items():
        scalars.update({f"{prefix}_{metric}_ci95_{end}": v for end, v in bounds.items() if v is not None})
    return scalars


def _operating_scalars(operating: dict) -> dict[str, float]:
    if not operating:
        return {}
    scalars = {"op_threshold": operating["threshold"]}
    for split, prefix in (("validation", "val"), ("test", "test")):
        scalars.update({f"{prefix}_op_{k}": v for k, v in operating[split].items()
                        if k in ("sensitivity", "specificity", "ppv", "npv") and v is not None})
    for metric, bounds in operating["test_confidence_intervals_95"].items():
        scalars.update({f"test_op_{metric}_ci95_{end}": v for end, v in bounds.items() if v is not None})
    return scalars


def mlflow_scalars(metrics: dict, val_metrics: dict, operating: dict, calibration: dict) -> dict[str, float]:
    """Every figure evaluate logs to MLflow: ``test_*``, ``val_*``, ``*_op_*`` and the calibration temperature."""
    return {**_scalars("test", metrics), **_scalars("val", val_metrics), **_operating_scalars(operating),
            "calibration_temperature": calibration["temperature"]}

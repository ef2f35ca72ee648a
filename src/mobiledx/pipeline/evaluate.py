"""Stage evaluate: validation and test metrics, the operating point, plots; logged to the training run.

The same metric set (with bootstrap 95 % CIs) is computed on the validation split, which is what
runs are compared and chosen on (``val_*`` in MLflow), and on the test split, reported once for the
chosen model (``test_*``). With ``evaluate.operating_class`` set, the threshold on p(class) that
meets the target on validation is the operating point, reported on test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mobiledx import plots, tracking
from mobiledx.data.cache import IngestedDataset, load_ingested
from mobiledx.evaluation import (
    bootstrap_intervals,
    classification_metrics,
    isic_challenge_frame,
    predictions_frame,
    reliability_table,
    subgroup_metrics,
)
from mobiledx.headline import evaluation_headline, write_headline
from mobiledx.inference import load_model, predict_probabilities
from mobiledx.io import read_json, write_csv, write_json
from mobiledx.metadata import load_encoder
from mobiledx.operating_point import OperatingPoint, operating_report
from mobiledx.params import Params
from mobiledx.paths import EVALUATION_PLOTS, OPERATING_POINT_PLOT, DatasetPaths


@dataclass
class SplitPredictions:
    """One split as the model sees it: ids, manifest rows, true class indices, probabilities."""

    frame: pd.DataFrame
    rows: np.ndarray
    y_true: np.ndarray
    probabilities: np.ndarray


def _predict(model, data: IngestedDataset, split: str, encoder, batch_size: int) -> SplitPredictions:
    frame = data.split(split)
    rows = data.rows(frame["image_id"])
    metadata = encoder.transform(data.manifest.iloc[rows]) if encoder else None
    probabilities = predict_probabilities(model, data.images, rows, batch_size, metadata=metadata)
    return SplitPredictions(frame, rows, data.class_indices(frame["label"]), probabilities)


def _metrics(split: SplitPredictions, classes: list[str], params: Params) -> dict:
    metrics = classification_metrics(split.y_true, split.probabilities, classes)
    metrics["confidence_intervals_95"] = bootstrap_intervals(
        split.y_true, split.probabilities, samples=params.evaluate.bootstrap_samples, seed=params.seed
    )
    return metrics


def _operating_point(params: Params, classes: list[str], val: SplitPredictions, test: SplitPredictions) -> dict:
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


def _plots(name: str, paths: DatasetPaths, classes: list[str], test: SplitPredictions, val: SplitPredictions,
           metrics: dict, operating: dict) -> list:
    """Write the evaluation plots; returns their paths."""
    out = paths.evaluation
    plots.confusion_matrix(metrics["confusion_matrix"], classes, out / "confusion_matrix.png", f"{name}: test split")
    plots.roc_curves(test.y_true, test.probabilities, classes, out / "roc_curves.png", f"{name}: ROC (one-vs-rest)")
    plots.pr_curves(test.y_true, test.probabilities, classes, out / "pr_curves.png", f"{name}: precision-recall")
    plots.reliability_diagram(reliability_table(test.y_true, test.probabilities),
                              metrics["expected_calibration_error"], out / "reliability.png", name)
    if operating:
        positive = classes.index(operating["class"])
        splits = {split: (s.y_true == positive, s.probabilities[:, positive])
                  for split, s in (("validation", val), ("test", test))}
        plots.operating_point(splits, operating["class"], operating["threshold"], out / OPERATING_POINT_PLOT, name)
    else:
        plots.message(out / OPERATING_POINT_PLOT, f"{name}: no operating point (set evaluate.operating_class)")
    return [out / png for png in (*EVALUATION_PLOTS, OPERATING_POINT_PLOT)]


def evaluate_dataset(name: str, params: Params) -> None:
    """Write the validation and test metrics, operating point, predictions, subgroups, plots and the
    headline figures; log them to the training run."""
    paths = DatasetPaths(name)
    data = load_ingested(paths)
    model = load_model(paths.keras_model)
    encoder = load_encoder(paths.encoder)
    batch = params.train.batch_size
    test, val = (_predict(model, data, split, encoder, batch) for split in ("test", "val"))
    metrics, val_metrics = _metrics(test, data.classes, params), _metrics(val, data.classes, params)
    operating = _operating_point(params, data.classes, val, test)
    point = OperatingPoint.from_report(operating)

    write_json(paths.metrics, metrics)
    write_json(paths.validation_metrics, val_metrics)
    write_json(paths.operating_point, operating)
    write_csv(paths.predictions, predictions_frame(test.frame["image_id"], test.y_true, test.probabilities,
                                                   data.classes))
    write_csv(paths.subgroups, subgroup_metrics(
        data.manifest.iloc[test.rows], test.y_true, test.probabilities, data.classes,
        operating=None if point is None else (data.classes.index(point.class_name), point.threshold)))
    pngs = _plots(name, paths, data.classes, test, val, metrics, operating)
    headline = write_headline(paths.evaluation_headline, name, evaluation_headline(metrics, val_metrics, operating))

    import mlflow

    with tracking.resume_run(read_json(paths.run_record)["run_id"]):
        mlflow.log_metrics({**_scalars("test", metrics), **_scalars("val", val_metrics),
                            **_operating_scalars(operating)})
        if point is not None:
            mlflow.set_tag("operating_point", point.describe())
        for png in pngs:
            mlflow.log_artifact(str(png), artifact_path="plots")
        for table in (paths.metrics, paths.validation_metrics, paths.operating_point, paths.subgroups,
                      paths.predictions):
            mlflow.log_artifact(str(table), artifact_path="evaluation")
        if data.info["kind"] == "ham10000":  # for the official isic-challenge-scoring package
            isic = isic_challenge_frame(test.frame["image_id"], test.probabilities, data.classes)
            mlflow.log_text(isic.to_csv(index=False), "evaluation/predictions_isic.csv")
    print(f"{name}: validation balanced accuracy {headline['val_balanced_accuracy']:.3f}; test accuracy "
          f"{headline['test_accuracy']:.3f}, balanced accuracy {headline['test_balanced_accuracy']:.3f} "
          f"(majority baseline {metrics['baseline_majority_balanced_accuracy']:.3f})")
    if point is not None:
        at = {k: "n/a" if v is None else f"{v:.3f}" for k, v in operating["test"].items()}
        print(f"{name}: operating point: {point.describe()}; on test: sensitivity {at['sensitivity']}, "
              f"specificity {at['specificity']}")

"""Stage evaluate: validation and test metrics, the operating point, plots; logged to the training run.

The same metric set (with bootstrap 95 % CIs) is computed on the validation split, which is what
runs are compared and chosen on (``val_*`` in MLflow), and on the test split, reported once for the
chosen model (``test_*``). With ``evaluate.calibration: temperature`` one temperature is fitted on
the validation split first (:mod:`mobiledx.evaluation.calibration`; export folds it into the ``.tflite``), and
every figure, plot and the operating point use the calibrated scores the shipped model returns;
``calibration.json`` and the reliability diagrams give the calibration error before and after. With
``evaluate.operating_class`` set, the threshold on p(class) that meets the target on validation is
the operating point, reported on test. The error gallery (:mod:`mobiledx.evaluation.gallery`) shows, per class, the
test images most confidently missed or falsely flagged and a few correct ones, with where the model looked
(:mod:`mobiledx.models.saliency`): one PNG per class, a DVC image plot and an MLflow artifact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mobiledx.data.cache import IngestedDataset, load_ingested
from mobiledx.evaluation import plots
from mobiledx.evaluation.calibration import (
    apply_temperature,
    expected_ece_if_calibrated,
    fit_temperature,
    held_out_temperature_gain,
    negative_log_likelihood,
)
from mobiledx.evaluation.classification import (
    bootstrap_intervals,
    classification_metrics,
    expected_calibration_error,
    isic_challenge_frame,
    predictions_frame,
    reliability_table,
    subgroup_metrics,
)
from mobiledx.evaluation.gallery import select_tiles, write_gallery
from mobiledx.evaluation.headline import evaluation_headline, write_headline
from mobiledx.evaluation.operating_point import OperatingPoint, operating_report
from mobiledx.io import read_json, write_csv, write_json
from mobiledx.models.inference import load_model, predict_probabilities
from mobiledx.models.patient_features import load_encoder
from mobiledx.models.saliency import MAP_TITLES, Explainer
from mobiledx.params import Params
from mobiledx.paths import EVALUATION_PLOTS, OPERATING_POINT_PLOT, DatasetPaths
from mobiledx.tracking import mlflow_runs


@dataclass
class SplitPredictions:
    """One split as the model sees it: ids, manifest rows, true class indices, probabilities (calibrated by
    :func:`_calibrate`; ``uncalibrated`` keeps the trained model's own)."""

    frame: pd.DataFrame
    rows: np.ndarray
    y_true: np.ndarray
    probabilities: np.ndarray
    uncalibrated: np.ndarray


def _predict(model, data: IngestedDataset, split: str, encoder, batch_size: int) -> SplitPredictions:
    frame = data.split(split)
    rows = data.rows(frame["image_id"])
    metadata = encoder.transform(data.manifest.iloc[rows]) if encoder else None
    probabilities = predict_probabilities(model, data.images, rows, batch_size, metadata=metadata)
    return SplitPredictions(frame, rows, data.class_indices(frame["label"]), probabilities, probabilities)


def _calibrate(method: str, val: SplitPredictions, test: SplitPredictions, seed: int) -> dict:
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


def _metrics(split: SplitPredictions, classes: list[str], params: Params) -> dict:
    metrics = classification_metrics(split.y_true, split.probabilities, classes)
    metrics["expected_calibration_error_uncalibrated"] = expected_calibration_error(split.y_true, split.uncalibrated)
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
           metrics: dict, operating: dict, calibration: dict) -> list:
    """Write the evaluation plots; returns their paths."""
    out = paths.evaluation
    plots.confusion_matrix(metrics["confusion_matrix"], classes, out / "confusion_matrix.png", f"{name}: test split")
    plots.roc_curves(test.y_true, test.probabilities, classes, out / "roc_curves.png", f"{name}: ROC (one-vs-rest)")
    plots.pr_curves(test.y_true, test.probabilities, classes, out / "pr_curves.png", f"{name}: precision-recall")
    after = "calibrated" if calibration["applied"] else "as trained (no temperature applied)"
    plots.reliability_diagrams(
        [(f"{split_name}, as trained", reliability_table(split.y_true, split.uncalibrated),
          calibration[split_name]["ece_before"]) for split_name, split in (("validation", val), ("test", test))]
        + [(f"{split_name}, {after} (T = {calibration['temperature']:.2f})",
            reliability_table(split.y_true, split.probabilities), calibration[split_name]["ece_after"])
           for split_name, split in (("validation", val), ("test", test))],
        out / "reliability.png", f"{name}: reliability, temperature fitted on validation")
    if operating:
        positive = classes.index(operating["class"])
        splits = {split: (s.y_true == positive, s.probabilities[:, positive])
                  for split, s in (("validation", val), ("test", test))}
        plots.operating_point(splits, operating["class"], operating["threshold"], out / OPERATING_POINT_PLOT, name)
    else:
        plots.message(out / OPERATING_POINT_PLOT, f"{name}: no operating point (set evaluate.operating_class)")
    return [out / png for png in (*EVALUATION_PLOTS, OPERATING_POINT_PLOT)]


def _gallery(name: str, paths: DatasetPaths, params: Params, model, data: IngestedDataset, test: SplitPredictions,
             encoder) -> list:
    """Write the error gallery (one PNG per class) and its tile list ``gallery.csv``; returns the PNGs.
    Only the tiles' images are read and explained, each for the class the model predicted."""
    tiles = select_tiles(test.y_true, test.probabilities, data.classes, params.evaluate.gallery_errors,
                         params.evaluate.gallery_correct)
    positions = tiles["position"].to_numpy()
    rows = test.rows[positions]
    images = data.images[rows]  # (tiles, size, size, 3) uint8: the pixels the model saw
    metadata = encoder.transform(data.manifest.iloc[rows]) if encoder else None
    explainer = Explainer(model)
    maps = explainer.explain(images, test.probabilities[positions].argmax(axis=1), metadata)
    tiles.insert(0, "image_id", test.frame["image_id"].to_numpy()[positions])
    tiles["maps"] = "+".join(explainer.map_names)
    write_csv(paths.gallery_tiles, tiles)
    return write_gallery(paths.gallery, name, data.classes, tiles, images, maps, MAP_TITLES)


def evaluate_dataset(name: str, params: Params) -> None:
    """Write the validation and test metrics, operating point, predictions, subgroups, plots and the
    headline figures; log them to the training run."""
    paths = DatasetPaths(name)
    data = load_ingested(paths)
    model = load_model(paths.keras_model)
    encoder = load_encoder(paths.encoder)
    batch = params.train.batch_size
    test, val = (_predict(model, data, split, encoder, batch) for split in ("test", "val"))
    calibration = _calibrate(params.evaluate.calibration, val, test, params.seed)
    metrics, val_metrics = _metrics(test, data.classes, params), _metrics(val, data.classes, params)
    operating = _operating_point(params, data.classes, val, test)
    point = OperatingPoint.from_report(operating)

    write_json(paths.calibration, calibration)
    write_json(paths.metrics, metrics)
    write_json(paths.validation_metrics, val_metrics)
    write_json(paths.operating_point, operating)
    write_csv(paths.predictions, predictions_frame(test.frame["image_id"], test.y_true, test.probabilities,
                                                   data.classes))
    write_csv(paths.subgroups, subgroup_metrics(
        data.manifest.iloc[test.rows], test.y_true, test.probabilities, data.classes,
        operating=None if point is None else (data.classes.index(point.class_name), point.threshold)))
    pngs = _plots(name, paths, data.classes, test, val, metrics, operating, calibration)
    gallery = _gallery(name, paths, params, model, data, test, encoder)
    headline = write_headline(paths.evaluation_headline, name,
                              evaluation_headline(metrics, val_metrics, operating, calibration))

    import mlflow

    with mlflow_runs.resume_run(read_json(paths.run_record)["run_id"]):
        mlflow.log_metrics({**_scalars("test", metrics), **_scalars("val", val_metrics),
                            **_operating_scalars(operating), "calibration_temperature": calibration["temperature"]})
        mlflow.set_tag("calibration", calibration["method"])
        if point is not None:
            mlflow.set_tag("operating_point", point.describe())
        for png in pngs:
            mlflow.log_artifact(str(png), artifact_path="plots")
        for png in gallery:
            mlflow.log_artifact(str(png), artifact_path="plots/gallery")
        mlflow.log_artifact(str(paths.keras_model), artifact_path="model")  # mobiledx predict --explain
        for table in (paths.metrics, paths.validation_metrics, paths.calibration, paths.operating_point,
                      paths.subgroups, paths.predictions, paths.gallery_tiles):
            mlflow.log_artifact(str(table), artifact_path="evaluation")
        if data.info["kind"] == "ham10000":  # for the official isic-challenge-scoring package
            isic = isic_challenge_frame(test.frame["image_id"], test.probabilities, data.classes)
            mlflow.log_text(isic.to_csv(index=False), "evaluation/predictions_isic.csv")
    print(f"{name}: validation balanced accuracy {headline['val_balanced_accuracy']:.3f}; test accuracy "
          f"{headline['test_accuracy']:.3f}, balanced accuracy {headline['test_balanced_accuracy']:.3f} "
          f"(majority baseline {metrics['baseline_majority_balanced_accuracy']:.3f})")
    test_ece = (f"expected calibration error on test {calibration['test']['ece_before']:.3f} -> "
                f"{calibration['test']['ece_after']:.3f} (a perfectly calibrated model would show about "
                f"{calibration['test']['ece_if_perfectly_calibrated']:.3f} on {metrics['n_images']} images)")
    if calibration["applied"]:
        print(f"{name}: calibrated: temperature {calibration['temperature']:.3f} fitted on validation; {test_ece}; "
              f"figures and the operating point use the calibrated scores the exported model returns")
    elif calibration["method"] == "temperature":
        print(f"{name}: calibration {calibration['reason']}; {test_ece}")
    print(f"{name}: error gallery: {len(gallery)} classes in {paths.gallery}/ (dvc plots show; MLflow plots/gallery)")
    if point is not None:
        at = {k: "n/a" if v is None else f"{v:.3f}" for k, v in operating["test"].items()}
        print(f"{name}: operating point: {point.describe()}; on test: sensitivity {at['sensitivity']}, "
              f"specificity {at['specificity']}")

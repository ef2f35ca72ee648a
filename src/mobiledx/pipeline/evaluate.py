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

from mobiledx.data.cache import load_ingested
from mobiledx.evaluation.classification import (
    isic_challenge_frame,
    predictions_frame,
    subgroup_metrics,
)
from mobiledx.evaluation.gallery import gallery_for_split
from mobiledx.evaluation.headline import evaluation_headline, write_headline
from mobiledx.evaluation.operating_point import OperatingPoint
from mobiledx.evaluation.plots import evaluation_plots
from mobiledx.evaluation.predictions import (
    calibrate_splits,
    mlflow_scalars,
    operating_point,
    predict_split,
    split_metrics,
)
from mobiledx.io import read_json, write_csv, write_json
from mobiledx.models.inference import load_model
from mobiledx.models.patient_features import load_encoder
from mobiledx.params import Params
from mobiledx.paths import DatasetPaths
from mobiledx.tracking import mlflow_runs


def evaluate_dataset(name: str, params: Params) -> None:
    """Write the validation and test metrics, operating point, predictions, subgroups, plots and the
    headline figures; log them to the training run."""
    paths = DatasetPaths(name)
    data = load_ingested(paths)
    model = load_model(paths.keras_model)
    encoder = load_encoder(paths.encoder)
    batch = params.train.batch_size
    test, val = (predict_split(model, data, split, encoder, batch) for split in ("test", "val"))
    calibration = calibrate_splits(params.evaluate.calibration, val, test, params.seed)
    metrics, val_metrics = (split_metrics(split, data.classes, params) for split in (test, val))
    operating = operating_point(params, data.classes, val, test)
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
    pngs = evaluation_plots(name, paths.evaluation, data.classes, test, val, metrics, operating, calibration)
    gallery = gallery_for_split(name, paths, params, model, data, test, encoder)
    headline = write_headline(paths.evaluation_headline, name,
                              evaluation_headline(metrics, val_metrics, operating, calibration))

    import mlflow

    with mlflow_runs.resume_run(read_json(paths.run_record)["run_id"]):
        mlflow.log_metrics(mlflow_scalars(metrics, val_metrics, operating, calibration))
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

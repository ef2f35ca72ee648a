"""Stage evaluate: test-split metrics and plots, logged to the training run."""

from __future__ import annotations

from mobiledx import plots, tracking
from mobiledx.data.cache import load_ingested
from mobiledx.evaluation import (
    bootstrap_intervals,
    classification_metrics,
    isic_challenge_frame,
    predictions_frame,
    reliability_table,
    subgroup_metrics,
)
from mobiledx.inference import load_model, predict_probabilities
from mobiledx.io import read_json, write_csv, write_json
from mobiledx.metadata import load_encoder
from mobiledx.params import Params
from mobiledx.paths import EVALUATION_PLOTS, DatasetPaths


def evaluate_dataset(name: str, params: Params) -> None:
    """Write ``metrics.json``, the predictions, subgroup table and plots; log them to the training run."""
    paths = DatasetPaths(name)
    data = load_ingested(paths)
    test = data.split("test")
    model = load_model(paths.keras_model)
    test_rows = data.rows(test["image_id"])
    encoder = load_encoder(paths.encoder)
    metadata = encoder.transform(data.manifest.iloc[test_rows]) if encoder else None
    probabilities = predict_probabilities(model, data.images, test_rows, params.train.batch_size, metadata=metadata)
    y_true = data.class_indices(test["label"])
    metrics = classification_metrics(y_true, probabilities, data.classes)
    metrics["confidence_intervals_95"] = bootstrap_intervals(
        y_true, probabilities, samples=params.evaluate.bootstrap_samples, seed=params.seed
    )
    reliability = reliability_table(y_true, probabilities)

    write_json(paths.metrics, metrics)
    write_csv(paths.predictions, predictions_frame(test["image_id"], y_true, probabilities, data.classes))
    write_csv(paths.subgroups, subgroup_metrics(data.manifest.iloc[test_rows], y_true, probabilities, data.classes))
    out = paths.evaluation
    plots.confusion_matrix(
        metrics["confusion_matrix"], data.classes, out / "confusion_matrix.png", f"{name}: test split"
    )
    plots.roc_curves(y_true, probabilities, data.classes, out / "roc_curves.png", f"{name}: ROC (one-vs-rest)")
    plots.pr_curves(y_true, probabilities, data.classes, out / "pr_curves.png", f"{name}: precision-recall")
    plots.reliability_diagram(reliability, metrics["expected_calibration_error"], out / "reliability.png", name)

    import mlflow

    with tracking.resume_run(read_json(paths.run_record)["run_id"]):
        scalars = {f"test_{k}": v for k, v in metrics.items() if isinstance(v, float)}
        for class_name, per_class in metrics["per_class"].items():
            scalars.update({f"test_{stat}_{class_name}": v for stat, v in per_class.items() if isinstance(v, float)})
        for metric, bounds in metrics["confidence_intervals_95"].items():
            scalars.update({f"test_{metric}_ci95_{end}": v for end, v in bounds.items() if v is not None})
        mlflow.log_metrics(scalars)
        for png in EVALUATION_PLOTS:
            mlflow.log_artifact(str(out / png), artifact_path="plots")
        for table in (paths.metrics, paths.subgroups, paths.predictions):
            mlflow.log_artifact(str(table), artifact_path="evaluation")
        if data.info["kind"] == "ham10000":  # for the official isic-challenge-scoring package
            isic = isic_challenge_frame(test["image_id"], probabilities, data.classes)
            mlflow.log_text(isic.to_csv(index=False), "evaluation/predictions_isic.csv")
    print(
        f"{name}: accuracy {metrics['accuracy']:.3f}, balanced accuracy {metrics['balanced_accuracy']:.3f} "
        f"(majority baseline {metrics['baseline_majority_balanced_accuracy']:.3f})"
    )

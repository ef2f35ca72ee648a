"""Stage evaluate: test-split metrics and plots, logged to the training run."""

from mobiledx import plots, tracking
from mobiledx.config import DatasetPaths, parse_stage_args
from mobiledx.data.cache import load_ingested
from mobiledx.evaluation import (
    bootstrap_intervals,
    classification_metrics,
    isic_challenge_frame,
    predictions_frame,
    reliability_table,
    subgroup_metrics,
)
from mobiledx.io import read_json, write_csv, write_json
from mobiledx.metadata import load_encoder
from mobiledx.models import load_model
from mobiledx.training import predict_probabilities


def main(argv=None) -> None:
    args, params = parse_stage_args(__doc__, argv)
    settings = params["evaluate"]
    paths = DatasetPaths(args.dataset)
    data = load_ingested(paths)
    test = data.split("test")
    model = load_model(paths.model / "model.keras")
    test_rows = data.rows(test["image_id"])
    encoder = load_encoder(paths.model / "metadata_encoder.json")
    metadata = encoder.transform(data.manifest.iloc[test_rows]) if encoder else None
    probabilities = predict_probabilities(model, data.images, test_rows, int(params["train"]["batch_size"]),
                                          metadata=metadata)
    y_true = data.class_indices(test["label"])
    metrics = classification_metrics(y_true, probabilities, data.classes)
    metrics["confidence_intervals_95"] = bootstrap_intervals(
        y_true, probabilities, samples=int(settings["bootstrap_samples"]), seed=int(params["seed"])
    )
    reliability = reliability_table(y_true, probabilities)

    out = paths.evaluation
    write_json(out / "metrics.json", metrics)
    write_csv(out / "predictions.csv", predictions_frame(test["image_id"], y_true, probabilities, data.classes))
    test_metadata = data.manifest.iloc[test_rows]
    write_csv(out / "subgroups.csv", subgroup_metrics(test_metadata, y_true, probabilities, data.classes))
    plots.confusion_matrix(metrics["confusion_matrix"], data.classes, out / "confusion_matrix.png", f"{args.dataset}: test split")
    plots.roc_curves(y_true, probabilities, data.classes, out / "roc_curves.png", f"{args.dataset}: ROC (one-vs-rest)")
    plots.pr_curves(y_true, probabilities, data.classes, out / "pr_curves.png", f"{args.dataset}: precision-recall")
    plots.reliability_diagram(reliability, metrics["expected_calibration_error"], out / "reliability.png", args.dataset)

    import mlflow

    with tracking.resume_run(read_json(paths.model / "run.json")["run_id"]):
        scalars = {f"test_{k}": v for k, v in metrics.items() if isinstance(v, float)}
        for name, per_class in metrics["per_class"].items():
            scalars.update({f"test_{stat}_{name}": v for stat, v in per_class.items() if isinstance(v, float)})
        for name, bounds in metrics["confidence_intervals_95"].items():
            scalars.update({f"test_{name}_ci95_{end}": v for end, v in bounds.items() if v is not None})
        mlflow.log_metrics(scalars)
        for png in ("confusion_matrix.png", "roc_curves.png", "pr_curves.png", "reliability.png"):
            mlflow.log_artifact(str(out / png), artifact_path="plots")
        for table in ("metrics.json", "subgroups.csv", "predictions.csv"):
            mlflow.log_artifact(str(out / table), artifact_path="evaluation")
        if data.info["kind"] == "ham10000":  # for the official isic-challenge-scoring package
            isic = isic_challenge_frame(test["image_id"], probabilities, data.classes)
            mlflow.log_text(isic.to_csv(index=False), "evaluation/predictions_isic.csv")
    print(f"{args.dataset}: accuracy {metrics['accuracy']:.3f}, balanced accuracy {metrics['balanced_accuracy']:.3f} "
          f"(majority baseline {metrics['baseline_majority_balanced_accuracy']:.3f})")


if __name__ == "__main__":
    main()

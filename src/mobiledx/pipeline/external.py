"""Stage external: the model trained on one dataset evaluated on another (``external:`` in params.yaml).

Writes ``data/external/<name>/``: ``metrics.json`` (the evaluate metric set with bootstrap CIs, the counts of
images used and excluded), ``predictions.csv``, ``excluded.csv`` (images of the data shared with the model's
training or validation images) and ``headline.json`` (DVC metrics); logs ``external/<data>/<metric>`` and a
``validated_on.<data>`` tag to the model's training run.
"""

from __future__ import annotations

from mobiledx.data.cache import load_ingested
from mobiledx.data.overlap import dataset_overlap, load_for_overlap
from mobiledx.evaluation.calibration import fold_temperature
from mobiledx.evaluation.classification import bootstrap_intervals, classification_metrics, predictions_frame
from mobiledx.evaluation.external_validation import FITTED_ON, ExternalValidationError, mapped_probabilities
from mobiledx.evaluation.headline import write_headline
from mobiledx.io import read_json, write_csv, write_json
from mobiledx.models.inference import load_model, predict_probabilities
from mobiledx.models.patient_features import load_encoder
from mobiledx.params import Params
from mobiledx.paths import DatasetPaths, external_dir
from mobiledx.tracking import mlflow_runs


def external_validation(name: str, params: Params) -> None:
    """Evaluate external validation ``name``: its model on every image of its data but the shared ones."""
    spec = params.external[name]
    source, out = DatasetPaths(spec.model), external_dir(name)
    trained = load_ingested(source)
    data = load_for_overlap(spec.data)
    if data.images.shape[1:] != trained.images.shape[1:]:
        raise ExternalValidationError(
            f"{spec.data} is cached at {data.images.shape[1]} px but {spec.model}'s model takes "
            f"{trained.images.shape[1]} px. Fix: give both the same ingest.image_size")
    overlap = dataset_overlap(trained, data, max_distance=params.ingest.near_duplicate_distance)
    seen = overlap.pairs[overlap.pairs["split_a"].isin(FITTED_ON)]
    excluded = set(seen["image_b"])
    kept = data.manifest[~data.manifest["image_id"].isin(excluded)]
    rows = data.rows(kept["image_id"])

    model = load_model(source.keras_model)
    calibration = read_json(source.calibration)
    fold_temperature(model, calibration["temperature"])  # the scores the shipped model returns
    encoder = load_encoder(source.encoder)
    metadata = encoder.transform(data.manifest.iloc[rows]) if encoder else None
    probabilities = predict_probabilities(model, data.images, rows, params.train.batch_size, metadata=metadata)
    mapped = mapped_probabilities(probabilities, trained.classes, data.classes, spec.labels)
    y_true = data.class_indices(kept["label"])
    metrics = classification_metrics(y_true, mapped, data.classes)
    metrics["confidence_intervals_95"] = bootstrap_intervals(y_true, mapped, samples=params.evaluate.bootstrap_samples,
                                                             seed=params.seed)
    metrics.update(model=spec.model, data=spec.data, labels=spec.labels, n_excluded=len(excluded),
                   n_shared_with_test=int(overlap.pairs.loc[overlap.pairs["split_a"] == "test", "image_b"].nunique()))
    write_json(out / "metrics.json", metrics)
    write_csv(out / "predictions.csv", predictions_frame(kept["image_id"], y_true, mapped, data.classes))
    write_csv(out / "excluded.csv", seen)
    headline = write_headline(out / "headline.json", name, {
        "balanced_accuracy": metrics["balanced_accuracy"], "accuracy": metrics["accuracy"],
        "macro_auc": metrics["roc_auc_macro"], "images": len(rows), "excluded": len(excluded)})

    import mlflow

    summary = (f"balanced accuracy {headline['balanced_accuracy']:.3f} on {len(rows)} images of {spec.data} "
               f"({len(excluded)} excluded: shared with the training or validation images)")
    with mlflow_runs.resume_run(read_json(source.run_record)["run_id"]):
        mlflow.log_metrics({f"external/{spec.data}/{key}": float(value) for key, value in metrics.items()
                            if isinstance(value, (int, float)) and not isinstance(value, bool)})
        mlflow.set_tag(f"validated_on.{spec.data}", summary)
        for path in (out / "metrics.json", out / "predictions.csv", out / "excluded.csv"):
            mlflow.log_artifact(str(path), artifact_path=f"external/{spec.data}")
    print(f"{name}: {spec.model}'s model on {spec.data}: {summary}; accuracy {headline['accuracy']:.3f}, "
          f"macro AUC {headline.get('macro_auc', float('nan')):.3f}")

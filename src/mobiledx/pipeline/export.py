"""Stage export: the release bundle, each variant measured as the pipeline and as the phone runs it.

For each ``.tflite`` variant (float32, float16, dynamic range, int8), with TFLite Model Metadata
(labels, normalisation, description) written into it: its figures on the test split through LiteRT and
through MediaPipe Tasks on the original files, and its latency (:mod:`mobiledx.tflite.measurement`).
Everything goes to ``export.json``, the model card, and the training run in MLflow.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from mobiledx.data.cache import RowView, load_ingested
from mobiledx.evaluation.calibration import fold_temperature
from mobiledx.evaluation.headline import export_headline, linked_metrics, write_headline
from mobiledx.evaluation.operating_point import OperatingPoint
from mobiledx.io import read_json, write_bytes, write_json, write_text
from mobiledx.models.inference import load_model
from mobiledx.models.patient_features import load_encoder
from mobiledx.params import Params
from mobiledx.paths import BUNDLE_DIR, DEFAULT_VARIANT, VARIANTS, DatasetPaths
from mobiledx.release.modelcard import build_model_card, render_markdown
from mobiledx.tflite import measurement
from mobiledx.tflite.conversion import convert_variants
from mobiledx.tflite.ondevice import model_description, write_metadata
from mobiledx.tracking import environment, mlflow_runs, model_registry
from mobiledx.tracking.mlflow_model import log_bundle_model


def _representative(params: Params, data, encoder):
    """The int8 calibration sample: a seeded draw of training images (with their metadata)."""
    train = data.split("train")
    chosen = np.random.default_rng(params.seed).permutation(len(train))[: params.export.representative_images]
    rows = data.rows(train["image_id"].iloc[chosen])
    images = RowView(data.images, rows)
    return images if encoder is None else (images, encoder.transform(data.manifest.iloc[rows]))


def _log(run_id: str, report: dict, paths: DatasetPaths, test: measurement.TestSet, classes: list[str], linked: dict,
         tags: dict, params: Params) -> str:
    """Log the figures, the plain ``tflite/`` bundle and the logged model to the run; returns the model id."""
    import mlflow

    with mlflow_runs.resume_run(run_id):
        mlflow.log_metrics({name: float(value) for variant, figures in report.items() for key, value in figures.items()
                            if isinstance(value, (int, float)) and (name := f"tflite_{variant}_{key}") not in linked})
        mlflow.log_metrics({f"tflite_{variant}_on_device_{path}_{key}": float(value)
                            for variant, figures in report.items()
                            for path, by_path in figures.get("on_device_paths", {}).items()
                            for key, value in by_path.items()})
        mlflow.set_tag("synthetic_data", tags["synthetic_data"])
        bundle = [paths.tflite(variant) for variant in report] + [paths.labels, *paths.model_cards, paths.encoder]
        for path in bundle:  # tflite/ in the run is a complete release bundle
            mlflow.log_artifact(str(path), artifact_path=BUNDLE_DIR)
        info = log_bundle_model(paths, example=test.images[0][None], num_classes=len(classes),
                                metadata_example=None if test.metadata is None else test.metadata[:1],
                                default_variant=DEFAULT_VARIANT, metrics=linked, tags=tags,
                                params={f"export.{key}": str(getattr(params.export, key))
                                        for key in ("representative_images", "int8_range_percentile",
                                                    "int8_float_stride")})
    return info.model_id


def _print_summary(dataset: str, report: dict, version, run_id: str) -> None:
    print("\n".join(measurement.summary_lines(dataset, report)))
    print(f"registered as version {version.version} of model {version.name!r} (run {run_id}); to release it, "
          f"mark it 'champion' in the MLflow UI and run `mobiledx release {dataset}`, or choose on validation: "
          f"`mobiledx release {dataset} --best val_balanced_accuracy`")


def export_dataset(dataset: str, params: Params) -> dict:
    """Run the export stage for ``dataset``; returns the per-variant report written to ``export.json``."""
    entry = params.dataset(dataset)
    paths = DatasetPaths(dataset)
    data = load_ingested(paths)
    model = load_model(paths.keras_model)
    calibration = read_json(paths.calibration)
    fold_temperature(model, calibration["temperature"])  # every variant returns the calibrated scores
    encoder = load_encoder(paths.encoder)
    metadata_encoding = encoder.description() if encoder else None
    test = measurement.load_test_set(dataset, params, data, paths, encoder)
    keras_metrics, val_metrics = read_json(paths.metrics), read_json(paths.validation_metrics)
    operating = read_json(paths.operating_point)
    point = OperatingPoint.from_report(operating)
    run = read_json(paths.run_record)
    # The card lists the environment that made the weights: what the training process recorded in its run.
    recorded = mlflow_runs.recorded_environment(run["run_id"])
    recorded_by = "train" if recorded else "export"

    representative = _representative(params, data, encoder)
    int8_images = len(representative[0] if encoder else representative)
    print(f"{dataset}: converting to {', '.join(VARIANTS)} (int8 calibrated on {int8_images} training images)",
          flush=True)
    converted = convert_variants(model, VARIANTS, representative, params.export.int8_range_percentile,
                                 params.export.int8_float_stride)
    described = model_description(dataset, params, data, converted["float32"], metadata_encoding, point, calibration)
    licences = data.manifest["license"][data.manifest["license"] != ""].value_counts().to_dict()
    flatbuffers = {variant: write_metadata(flatbuffer, **described, image_licenses=licences)
                   for variant, flatbuffer in converted.items()}
    report, pipeline = {}, {}
    for variant, flatbuffer in flatbuffers.items():
        write_bytes(paths.tflite(variant), flatbuffer)
        print(f"{dataset} {variant}: LiteRT on {len(test.images)} test images, then latency", flush=True)
        report[variant], pipeline[variant] = measurement.measure_variant(flatbuffer, test, data.classes,
                                                                         params.export.latency_runs)
    if test.files_unavailable is None:
        scores = measurement.on_device_scores(flatbuffers, test.files, len(data.classes),
                                              int(data.info["image_size"]))
        measurement.add_on_device(report, scores, test, pipeline, data.classes)
    else:
        print(f"{dataset}: no on-device evaluation: {test.files_unavailable}")
    measurement.compare_with_keras(report, keras_metrics)

    subgroups = pd.read_csv(paths.subgroups, dtype={"attribute": str, "value": str}, keep_default_na=False,
                            na_values=[""])
    hashes = {paths.tflite(v).name: hashlib.sha256(f).hexdigest() for v, f in flatbuffers.items()}
    card = build_model_card(
        dataset=dataset, info=data.info, synthetic=entry.synthetic, params=params, run=run, metrics=keras_metrics,
        validation_metrics=val_metrics, operating=operating, subgroups=subgroups.to_dict("records"),
        variants=report, metadata_encoding=metadata_encoding, files=hashes,
        architecture=f"{model.name}, {model.count_params():,} parameters", license=entry.license,
        image_licenses=licences, on_device_note=test.files_unavailable,
        environment=recorded or environment.describe(), environment_recorded_by=recorded_by,
        calibration=calibration,
    )
    labels = "\n".join(data.classes) + "\n"
    write_text(paths.labels, labels)
    write_json(paths.export_report, report)
    write_json(paths.model_cards[1], card)
    write_text(paths.model_cards[0], render_markdown(card))
    write_headline(paths.export_headline, dataset, export_headline(report, DEFAULT_VARIANT))
    hashes[paths.labels.name] = hashlib.sha256(labels.encode()).hexdigest()
    tags = {"dataset": dataset, "synthetic_data": str(entry.synthetic).lower(), "default_variant": DEFAULT_VARIANT,
            **{f"sha256.{name}": digest for name, digest in hashes.items()}}
    if point is not None:
        tags["operating_point"] = point.describe()
    _log(run["run_id"], report, paths, test, data.classes,
         linked_metrics(report, keras_metrics, val_metrics, operating, DEFAULT_VARIANT), tags, params)
    version = model_registry.register_run(run["run_id"], dataset)
    _print_summary(dataset, report, version, run["run_id"])
    return report

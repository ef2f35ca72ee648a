"""Stage export: the release bundle, each variant measured as the pipeline and as the phone runs it.

For each ``.tflite`` variant (float32, float16, dynamic range, int8), with TFLite Model Metadata
(labels, normalisation, description) written into it:

- **pipeline**: LiteRT on the test split's cached pixels: accuracy, balanced accuracy and agreement
  with the Keras model;
- **on device**: MediaPipe Tasks' ``ImageClassifier`` on the ORIGINAL test image files, through every
  decoding path an app uses (:data:`mobiledx.ondevice.DECODING_PATHS`: MediaPipe decoding the file,
  libjpeg-turbo at full and at half size) and resized by the runtime itself: per path, accuracy and
  top-1 agreement with the variant's own LiteRT run (the pipeline) and with Keras. The headline
  figures are the WORST path's (single-input models with image files);
- **latency**: ``litert-benchmark`` at 1 and 2 threads (median, p95, initialisation) and whether the
  CPU accelerator runs the whole graph.

Everything goes to ``export.json``, the model card, and the training run in MLflow.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mobiledx import __version__, environment, registry, tracking
from mobiledx.calibration import fold_temperature
from mobiledx.data.cache import RowView, load_ingested
from mobiledx.data.images import read_frame
from mobiledx.evaluation import classification_metrics
from mobiledx.export import TFLiteClassifier, convert_variants
from mobiledx.headline import export_headline, write_headline
from mobiledx.inference import load_model
from mobiledx.io import read_json, write_bytes, write_json, write_text
from mobiledx.metadata import load_encoder
from mobiledx.mlflow_model import log_bundle_model
from mobiledx.modelcard import build_model_card, render_markdown
from mobiledx.ondevice import (
    DECODING_PATHS,
    MEDIAPIPE_SINGLE_INPUT,
    OnDeviceClassifier,
    benchmark,
    cpu_ops,
    write_metadata,
)
from mobiledx.operating_point import OperatingPoint
from mobiledx.params import Params
from mobiledx.paths import BUNDLE_DIR, DEFAULT_VARIANT, VARIANTS, DatasetPaths

THREADS = (1, 2)
LINKED_VARIANT_FIGURES = ("accuracy", "agreement_with_keras", "size_bytes", "latency_ms_1_thread",
                          "on_device_accuracy", "on_device_agreement_with_pipeline")
ON_DEVICE_FIGURES = ("n_images", "agreement_with_pipeline", "agreement_with_keras", "accuracy", "balanced_accuracy",
                     "max_score_difference")


@dataclass
class TestSet:
    """The test split as export measures it: pixels (lazy), labels, metadata, Keras' predictions, original files."""

    images: RowView
    y_true: np.ndarray
    metadata: np.ndarray | None
    keras_predicted: np.ndarray
    files: list[Path] | None
    files_unavailable: str | None


def _metadata_encoding(paths: DatasetPaths):
    """The training stage's encoder and its description for the model card (``(None, None)``: image only)."""
    encoder = load_encoder(paths.encoder)
    if encoder is None:
        return None, None
    return encoder, {
        "features": encoder.feature_names,
        "age": f"(age - {encoder.age_mean:.2f}) / {encoder.age_std:.2f}; unknown age = 0 with age_missing = 1",
        "sex": f"one-hot over {encoder.sexes}",
        "site": f"one-hot over {encoder.sites}",
    }


def _test_files(raw_dir: Path, paths: pd.Series) -> tuple[list[Path] | None, str | None]:
    """The original files of the test images, or ``None`` and the reason they cannot be read."""
    files = [raw_dir / path for path in paths]
    if any("#" in path for path in paths):
        return None, "the dataset is shipped as arrays (no image files)"
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        return None, f"{len(missing)} test image file(s) not found under {raw_dir}, e.g. {missing[0]}"
    return files, None


def _test_set(dataset: str, params: Params, data, paths: DatasetPaths, encoder) -> TestSet:
    test = data.split("test")
    rows = data.rows(test["image_id"])
    keras_predictions = pd.read_csv(paths.predictions, dtype=str, keep_default_na=False)
    if keras_predictions["image_id"].tolist() != test["image_id"].tolist():
        raise ValueError(f"{paths.predictions} does not list this test split; re-run evaluate")
    files, unavailable = _test_files(Path(params.dataset(dataset).path), data.manifest["path"].iloc[rows])
    if encoder is not None:
        unavailable = f"{MEDIAPIPE_SINGLE_INPUT}; this model also takes patient metadata (run it with LiteRT)"
    return TestSet(images=RowView(data.images, rows), y_true=data.class_indices(test["label"]),
                   metadata=encoder.transform(data.manifest.iloc[rows]) if encoder else None,
                   keras_predicted=keras_predictions["predicted"].to_numpy(), files=files,
                   files_unavailable=unavailable)


def _representative(params: Params, data, encoder):
    """The int8 calibration sample: a seeded draw of training images (with their metadata)."""
    train = data.split("train")
    chosen = np.random.default_rng(params.seed).permutation(len(train))[: params.export.representative_images]
    rows = data.rows(train["image_id"].iloc[chosen])
    images = RowView(data.images, rows)
    return images if encoder is None else (images, encoder.transform(data.manifest.iloc[rows]))


def _described(dataset: str, params: Params, data, float32: bytes, metadata_encoding,
               point: OperatingPoint | None, calibration: dict) -> dict:
    """What the ``.tflite`` metadata says: name, description (with the operating point), version, author,
    licence, labels, inputs."""
    entry, size = params.dataset(dataset), int(data.info["image_size"])
    operating = f" Operating point: {point.describe()}." if point is not None else ""
    if calibration["applied"]:
        operating = (f" Scores: probabilities calibrated on the validation split (temperature "
                     f"{calibration['temperature']:.3f} folded into the model).{operating}")
    what = "SYNTHETIC demo data (no clinical meaning)" if entry.synthetic else f"{data.info.get('n_images')} images"
    return {
        "labels": data.classes,
        "name": f"mobiledx-{dataset}",
        "description": (f"{len(data.classes)}-class image classifier trained by mobiledx on {dataset} "
                        f"({data.info.get('kind')} layout, {what}). Input: the whole RGB frame, stretched to "
                        f"{size}x{size} (MediaPipe ImageClassifier's own preprocessing).{operating} Research "
                        f"prototype, not a medical device: not for diagnosis."),
        # The version names the weights (same model, same bytes: no run id or date in the file).
        "version": f"{__version__}+weights.{hashlib.sha256(float32).hexdigest()[:12]}",
        "author": params.export.author,
        "license": f"model trained on data licensed: {entry.license}",
        "metadata_description": None if metadata_encoding is None else
        "patient metadata, float32, encoded outside the model (see model_card.md): "
        + ", ".join(metadata_encoding["features"]),
    }


def _measure(flatbuffer: bytes, test: TestSet, classes: list[str], latency_runs: int) -> tuple[dict, np.ndarray]:
    """One variant on the cached test pixels with LiteRT, and its latency: ``(figures, probabilities)``."""
    classifier = TFLiteClassifier(flatbuffer)
    probabilities = classifier.predict(test.images, test.metadata)
    metrics = classification_metrics(test.y_true, probabilities, classes)
    predicted = probabilities.argmax(axis=1)
    agrees = np.array(classes)[predicted] == test.keras_predicted
    figures = {
        "size_bytes": len(flatbuffer),
        "accuracy": metrics["accuracy"],
        "balanced_accuracy": metrics["balanced_accuracy"],
        "agreement_with_keras": float(np.mean(agrees)),
        "disagreements_with_keras": int(np.sum(~agrees)),  # test images whose top-1 class differs from Keras's
        "non_builtin_ops": classifier.custom_ops(),
        "cpu_ops": sorted(set(cpu_ops(flatbuffer))),
    }
    for threads in THREADS:
        timing = benchmark(flatbuffer, threads=threads, runs=latency_runs)
        suffix = "1_thread" if threads == 1 else f"{threads}_threads"
        figures[f"latency_ms_{suffix}"] = timing["median_ms"]
        figures[f"latency_p95_ms_{suffix}"] = timing["p95_ms"]
        figures["init_ms"], figures["fully_delegated"] = timing["init_ms"], timing["fully_delegated"]
    return figures, probabilities


def _on_device(flatbuffers: dict[str, bytes], files: list[Path], num_classes: int,
               image_size: int) -> dict[tuple[str, str], np.ndarray]:
    """Scores of each (variant, decoding path) for every test file from MediaPipe's ImageClassifier: MediaPipe
    decoding the file, or handed the frame libjpeg-turbo decodes at full or half size (NaN rows: the path does
    not apply to that file, e.g. no half-size decode for a file under twice the input size)."""
    from tqdm import tqdm

    classifiers = {variant: OnDeviceClassifier(flatbuffer, num_classes) for variant, flatbuffer in flatbuffers.items()}
    scores = {(variant, path): np.full((len(files), num_classes), np.nan, np.float32)
              for variant in flatbuffers for path in DECODING_PATHS}
    try:
        for i, file in enumerate(tqdm(files, desc="on-device (MediaPipe, 3 decoding paths)", unit="img",
                                      mininterval=2.0)):
            data = file.read_bytes()
            frames = {"libjpeg_turbo": read_frame(data).pixels}
            half = read_frame(data, jpeg_reduction=2).pixels
            if half.shape != frames["libjpeg_turbo"].shape and min(half.shape[:2]) >= image_size:
                frames["libjpeg_turbo_half"] = half
            for variant, classifier in classifiers.items():
                scores[variant, "mediapipe_file"][i] = classifier.classify_file(file)
                for path, frame in frames.items():
                    scores[variant, path][i] = classifier.classify_frame(frame)[0]
    finally:
        for classifier in classifiers.values():
            classifier.close()
    return scores


def _add_on_device(report: dict, scores: dict[tuple[str, str], np.ndarray], test: TestSet, pipeline: dict,
                   classes: list[str]) -> None:
    """Per variant, each decoding path's figures (``on_device_paths``) and the headline: the worst path's
    agreement with the pipeline (``on_device_worst_path``) and the lowest on-device accuracy over paths."""
    for variant in report:
        paths = {}
        for path in DECODING_PATHS:
            measured = ~np.isnan(scores[variant, path][:, 0])
            if not measured.any():
                continue
            on_device, reference = scores[variant, path][measured], pipeline[variant][measured]
            predicted = on_device.argmax(axis=1)
            metrics = classification_metrics(test.y_true[measured], on_device, classes)
            paths[path] = {
                "n_images": int(measured.sum()),
                "agreement_with_pipeline": float(np.mean(predicted == reference.argmax(axis=1))),
                "agreement_with_keras": float(np.mean(np.array(classes)[predicted] == test.keras_predicted[measured])),
                "accuracy": metrics["accuracy"],
                "balanced_accuracy": metrics["balanced_accuracy"],
                "max_score_difference": float(np.abs(on_device - reference).max()),
            }
        worst = min(paths, key=lambda path: (paths[path]["agreement_with_pipeline"], -paths[path]["n_images"]))
        report[variant].update({
            "on_device_paths": paths,
            "on_device_worst_path": worst,
            "on_device_agreement_with_pipeline": paths[worst]["agreement_with_pipeline"],
            "on_device_agreement_with_keras": min(figures["agreement_with_keras"] for figures in paths.values()),
            "on_device_accuracy": min(figures["accuracy"] for figures in paths.values()),
            "on_device_balanced_accuracy": min(figures["balanced_accuracy"] for figures in paths.values()),
        })


def _linked_metrics(report: dict, metrics: dict, val_metrics: dict, operating: dict) -> dict[str, float]:
    """The figures linked to the logged model (MLflow's model page): its splits' headline and the shipped variant's."""
    linked = {f"{prefix}_{key}": split[key] for prefix, split in (("test", metrics), ("val", val_metrics))
              for key in ("accuracy", "balanced_accuracy", "roc_auc_macro") if split.get(key) is not None}
    if operating:
        linked["op_threshold"] = operating["threshold"]
        linked.update({f"test_op_{key}": operating["test"][key] for key in ("sensitivity", "specificity")
                       if operating["test"][key] is not None})
    shipped = report[DEFAULT_VARIANT]
    linked.update({f"tflite_{DEFAULT_VARIANT}_{key}": float(shipped[key]) for key in LINKED_VARIANT_FIGURES
                   if key in shipped})
    return linked


def _log(run_id: str, report: dict, paths: DatasetPaths, test: TestSet, classes: list[str], linked: dict,
         tags: dict, params: Params) -> str:
    """Log the figures, the plain ``tflite/`` bundle and the logged model to the run; returns the model id."""
    import mlflow

    with tracking.resume_run(run_id):
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
    for variant, figures in report.items():
        on_device = ""
        if "on_device_paths" in figures:
            on_device = (f"; on device (MediaPipe, {len(figures['on_device_paths'])} decoding paths): accuracy "
                         f"{figures['on_device_accuracy']:.3f} at worst, top-1 agreement with this variant's own "
                         f"LiteRT run {figures['on_device_agreement_with_pipeline']:.3f} on the worst path "
                         f"({figures['on_device_worst_path']})")
        delegation = ("fully delegated" if figures["fully_delegated"]
                      else f"NOT fully delegated: {', '.join(figures['cpu_ops'])}")
        print(f"{dataset} {variant}: {figures['size_bytes'] / 1e6:.2f} MB ({figures['size_ratio_to_float32']:.2f}x); "
              f"its LiteRT run on the test pixels: accuracy {figures['accuracy']:.3f} "
              f"({figures['accuracy_delta_vs_keras']:+.3f} vs Keras), top-1 agreement with Keras "
              f"{figures['agreement_with_keras']:.3f}{on_device}; latency {figures['latency_ms_1_thread']:.2f} ms "
              f"1 thread / {figures['latency_ms_2_threads']:.2f} ms 2 threads, {delegation}")
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
    encoder, metadata_encoding = _metadata_encoding(paths)
    test = _test_set(dataset, params, data, paths, encoder)
    keras_metrics, val_metrics = read_json(paths.metrics), read_json(paths.validation_metrics)
    operating = read_json(paths.operating_point)
    point = OperatingPoint.from_report(operating)
    run = read_json(paths.run_record)
    # The card lists the environment that made the weights: what the training process recorded in its run.
    recorded = tracking.recorded_environment(run["run_id"])
    recorded_by = "train" if recorded else "export"

    representative = _representative(params, data, encoder)
    int8_images = len(representative[0] if encoder else representative)
    print(f"{dataset}: converting to {', '.join(VARIANTS)} (int8 calibrated on {int8_images} training images)",
          flush=True)
    converted = convert_variants(model, VARIANTS, representative, params.export.int8_range_percentile,
                                 params.export.int8_float_stride)
    described = _described(dataset, params, data, converted["float32"], metadata_encoding, point, calibration)
    licences = data.manifest["license"][data.manifest["license"] != ""].value_counts().to_dict()
    flatbuffers = {variant: write_metadata(flatbuffer, **described, image_licenses=licences)
                   for variant, flatbuffer in converted.items()}
    report, pipeline = {}, {}
    for variant, flatbuffer in flatbuffers.items():
        write_bytes(paths.tflite(variant), flatbuffer)
        print(f"{dataset} {variant}: LiteRT on {len(test.images)} test images, then latency", flush=True)
        report[variant], pipeline[variant] = _measure(flatbuffer, test, data.classes, params.export.latency_runs)
    if test.files_unavailable is None:
        scores = _on_device(flatbuffers, test.files, len(data.classes), int(data.info["image_size"]))
        _add_on_device(report, scores, test, pipeline, data.classes)
    else:
        print(f"{dataset}: no on-device evaluation: {test.files_unavailable}")
    for figures in report.values():
        figures["accuracy_delta_vs_keras"] = figures["accuracy"] - keras_metrics["accuracy"]
        balanced = figures["balanced_accuracy"] - keras_metrics["balanced_accuracy"]
        figures["balanced_accuracy_delta_vs_keras"] = balanced
        figures["size_ratio_to_float32"] = figures["size_bytes"] / report["float32"]["size_bytes"]
        figures["latency_ratio_to_float32"] = figures["latency_ms_1_thread"] / report["float32"]["latency_ms_1_thread"]

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
         _linked_metrics(report, keras_metrics, val_metrics, operating), tags, params)
    version = registry.register_run(run["run_id"], dataset)
    _print_summary(dataset, report, version, run["run_id"])
    return report

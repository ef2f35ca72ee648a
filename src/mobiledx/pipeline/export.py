"""Stage export: the release bundle, each variant measured as the pipeline and as the phone runs it.

For each ``.tflite`` variant (float32, float16, dynamic range, int8), with TFLite Model Metadata
(labels, normalisation, description) written into it:

- **pipeline**: LiteRT on the test split's cached pixels: accuracy, balanced accuracy and agreement
  with the Keras model;
- **on device**: MediaPipe Tasks' ``ImageClassifier`` on the ORIGINAL test image files, decoded and
  resized by the runtime itself, as an Android or iOS app runs it: accuracy and top-1 agreement with
  the pipeline (for single-input models with image files);
- **latency**: ``litert-benchmark`` at 1 and 2 threads (median, p95, initialisation) and whether the
  CPU accelerator runs the whole graph.

Everything goes to ``export.json``, the model card, and the training run in MLflow.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from mobiledx import __version__, registry, tracking
from mobiledx.data.cache import RowView, load_ingested
from mobiledx.evaluation import classification_metrics
from mobiledx.export import TFLiteClassifier, convert_variants
from mobiledx.inference import load_model
from mobiledx.io import read_json, write_bytes, write_json, write_text
from mobiledx.metadata import load_encoder
from mobiledx.modelcard import build_model_card, render_markdown
from mobiledx.ondevice import MEDIAPIPE_SINGLE_INPUT, OnDeviceClassifier, benchmark, cpu_ops, write_metadata
from mobiledx.params import Params
from mobiledx.paths import BUNDLE_DIR, VARIANTS, DatasetPaths

THREADS = (1, 2)


def _metadata_inputs(paths: DatasetPaths, data, test_rows: np.ndarray, representative_rows: np.ndarray):
    """Encoded metadata of the test and calibration images with the training stage's encoder, and its
    description for the model card; ``(None, None, None)`` for an image-only model."""
    encoder = load_encoder(paths.encoder)
    if encoder is None:
        return None, None, None
    description = {
        "features": encoder.feature_names,
        "age": f"(age - {encoder.age_mean:.2f}) / {encoder.age_std:.2f}; unknown age = 0 with age_missing = 1",
        "sex": f"one-hot over {encoder.sexes}", "site": f"one-hot over {encoder.sites}",
    }
    return (
        encoder.transform(data.manifest.iloc[test_rows]),
        encoder.transform(data.manifest.iloc[representative_rows]),
        description,
    )


def _test_files(raw_dir: Path, paths: pd.Series) -> tuple[list[Path] | None, str | None]:
    """The original files of the test images, or ``None`` and the reason they cannot be read."""
    files = [raw_dir / path for path in paths]
    if any("#" in path for path in paths):
        return None, "the dataset is shipped as arrays (no image files)"
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        return None, f"{len(missing)} test image file(s) not found under {raw_dir}, e.g. {missing[0]}"
    return files, None


def _on_device(flatbuffers: dict[str, bytes], files: list[Path], num_classes: int) -> dict[str, np.ndarray]:
    """Each variant's scores for every file, from MediaPipe's ImageClassifier (one decode per file and variant)."""
    from tqdm import tqdm

    classifiers = {variant: OnDeviceClassifier(flatbuffer, num_classes) for variant, flatbuffer in flatbuffers.items()}
    scores = {variant: np.zeros((len(files), num_classes), np.float32) for variant in flatbuffers}
    try:
        for i, path in enumerate(tqdm(files, desc="on-device (MediaPipe)", unit="img", mininterval=2.0)):
            for variant, classifier in classifiers.items():
                scores[variant][i] = classifier.classify_file(path)
    finally:
        for classifier in classifiers.values():
            classifier.close()
    return scores


def _model_description(dataset: str, info: dict, image_size: int, synthetic: bool) -> str:
    data = "SYNTHETIC demo data (no clinical meaning)" if synthetic else f"{info.get('n_images')} images"
    return (
        f"{len(info['classes'])}-class image classifier trained by mobiledx on {dataset} "
        f"({info.get('kind')} layout, {data}). Input: the whole RGB frame, stretched to {image_size}x{image_size} "
        f"(MediaPipe ImageClassifier's own preprocessing). Research prototype, not a medical device: "
        f"not for diagnosis."
    )


def export_dataset(dataset: str, params: Params) -> dict:
    """Run the export stage for ``dataset``; returns the per-variant report written to ``export.json``."""
    entry = params.dataset(dataset)
    settings = params.export
    paths = DatasetPaths(dataset)
    data = load_ingested(paths)
    model = load_model(paths.keras_model)

    test = data.split("test")
    test_rows = data.rows(test["image_id"])
    test_images = RowView(data.images, test_rows)  # read image by image
    y_true = data.class_indices(test["label"])
    keras_metrics = read_json(paths.metrics)
    keras_predictions = pd.read_csv(paths.predictions, dtype=str, keep_default_na=False)
    if keras_predictions["image_id"].tolist() != test["image_id"].tolist():
        raise ValueError(f"{paths.predictions} does not list this test split; re-run evaluate")
    keras_predicted = keras_predictions["predicted"].to_numpy()

    train = data.split("train")
    chosen = np.random.default_rng(params.seed).permutation(len(train))[: settings.representative_images]
    representative_rows = data.rows(train["image_id"].iloc[chosen])
    test_metadata, representative_metadata, metadata_encoding = _metadata_inputs(
        paths, data, test_rows, representative_rows
    )
    representative_images = RowView(data.images, representative_rows)
    representative = (
        representative_images if representative_metadata is None else (representative_images, representative_metadata)
    )

    run = read_json(paths.run_record)
    image_size = int(data.info["image_size"])
    converted = convert_variants(model, VARIANTS, representative)
    described = {
        "labels": data.classes,
        "name": f"mobiledx-{dataset}",
        "description": _model_description(dataset, data.info, image_size, entry.synthetic),
        # The version names the weights (same model, same bytes: no run id or date in the file).
        "version": f"{__version__}+weights.{hashlib.sha256(converted['float32']).hexdigest()[:12]}",
        "author": settings.author,
        "license": f"model trained on data licensed: {entry.license}",
        "metadata_description": None
        if metadata_encoding is None
        else "patient metadata, float32, encoded outside the model (see model_card.md): "
        + ", ".join(metadata_encoding["features"]),
    }
    flatbuffers = {variant: write_metadata(flatbuffer, **described) for variant, flatbuffer in converted.items()}

    report, hashes, pipeline_predicted = {}, {}, {}
    for variant, flatbuffer in flatbuffers.items():
        write_bytes(paths.tflite(variant), flatbuffer)
        hashes[paths.tflite(variant).name] = hashlib.sha256(flatbuffer).hexdigest()
        classifier = TFLiteClassifier(flatbuffer)
        probabilities = classifier.predict(test_images, test_metadata)
        metrics = classification_metrics(y_true, probabilities, data.classes)
        pipeline_predicted[variant] = probabilities.argmax(axis=1)
        figures = {
            "size_bytes": len(flatbuffer),
            "accuracy": metrics["accuracy"],
            "balanced_accuracy": metrics["balanced_accuracy"],
            "accuracy_delta_vs_keras": metrics["accuracy"] - keras_metrics["accuracy"],
            "balanced_accuracy_delta_vs_keras": metrics["balanced_accuracy"] - keras_metrics["balanced_accuracy"],
            "agreement_with_keras": float(
                np.mean(np.array(data.classes)[pipeline_predicted[variant]] == keras_predicted)
            ),
            "non_builtin_ops": classifier.custom_ops(),
            "cpu_ops": sorted(set(cpu_ops(flatbuffer))),
        }
        for threads in THREADS:
            timing = benchmark(flatbuffer, threads=threads, runs=settings.latency_runs)
            suffix = "1_thread" if threads == 1 else f"{threads}_threads"
            figures[f"latency_ms_{suffix}"] = timing["median_ms"]
            figures[f"latency_p95_ms_{suffix}"] = timing["p95_ms"]
            figures["init_ms"] = timing["init_ms"]
            figures["fully_delegated"] = timing["fully_delegated"]
        report[variant] = figures

    files, unavailable = _test_files(Path(entry.path), data.manifest["path"].iloc[test_rows])
    if test_metadata is not None:
        unavailable = f"{MEDIAPIPE_SINGLE_INPUT}; this model also takes patient metadata (run it with LiteRT)"
    if unavailable is None:
        on_device = _on_device(flatbuffers, files, len(data.classes))
        for variant, scores in on_device.items():
            metrics = classification_metrics(y_true, scores, data.classes)
            predicted = scores.argmax(axis=1)
            report[variant].update(
                {
                    "on_device_accuracy": metrics["accuracy"],
                    "on_device_balanced_accuracy": metrics["balanced_accuracy"],
                    "on_device_agreement_with_pipeline": float(np.mean(predicted == pipeline_predicted[variant])),
                    "on_device_agreement_with_keras": float(
                        np.mean(np.array(data.classes)[predicted] == keras_predicted)
                    ),
                }
            )
    else:
        print(f"{dataset}: no on-device evaluation: {unavailable}")
    reference = report["float32"]
    for figures in report.values():
        figures["size_ratio_to_float32"] = figures["size_bytes"] / reference["size_bytes"]
        figures["latency_ratio_to_float32"] = figures["latency_ms_1_thread"] / reference["latency_ms_1_thread"]

    subgroups = pd.read_csv(
        paths.subgroups, dtype={"attribute": str, "value": str}, keep_default_na=False, na_values=[""]
    )
    card = build_model_card(
        dataset=dataset,
        info=data.info,
        synthetic=entry.synthetic,
        params=params,
        run=run,
        metrics=keras_metrics,
        subgroups=subgroups.to_dict("records"),
        variants=report,
        metadata_encoding=metadata_encoding,
        files=hashes,
        architecture=f"{model.name}, {model.count_params():,} parameters",
        license=entry.license,
        on_device_note=unavailable,
    )
    card_json, card_markdown = paths.model_cards[1], paths.model_cards[0]
    write_text(paths.labels, "\n".join(data.classes) + "\n")
    write_json(paths.export_report, report)
    write_json(card_json, card)
    write_text(card_markdown, render_markdown(card))

    import mlflow

    with tracking.resume_run(run["run_id"]):
        for variant, figures in report.items():
            mlflow.log_metrics(
                {
                    f"tflite_{variant}_{key}": float(value)
                    for key, value in figures.items()
                    if isinstance(value, (int, float))
                }
            )
        mlflow.set_tag("synthetic_data", str(entry.synthetic).lower())
        bundle = [paths.tflite(variant) for variant in report] + [paths.labels, *paths.model_cards, paths.encoder]
        for path in bundle:  # tflite/ in the run is a complete release bundle
            mlflow.log_artifact(str(path), artifact_path=BUNDLE_DIR)
    version = registry.register_run(run["run_id"], dataset)
    for variant, figures in report.items():
        on_device = (
            f", on device {figures['on_device_accuracy']:.3f} (agreement "
            f"{figures['on_device_agreement_with_pipeline']:.3f})"
            if "on_device_accuracy" in figures
            else ""
        )
        print(
            f"{dataset} {variant}: {figures['size_bytes'] / 1e6:.2f} MB ({figures['size_ratio_to_float32']:.2f}x), "
            f"accuracy {figures['accuracy']:.3f} ({figures['accuracy_delta_vs_keras']:+.3f} vs Keras){on_device}, "
            f"agreement with Keras {figures['agreement_with_keras']:.3f}, "
            f"latency {figures['latency_ms_1_thread']:.2f} ms "
            f"1 thread / {figures['latency_ms_2_threads']:.2f} ms 2 threads, "
            + ("fully delegated" if figures["fully_delegated"]
               else f"NOT fully delegated: {', '.join(figures['cpu_ops'])}")
        )
    print(
        f"registered as version {version.version} of model {version.name!r}; "
        f"release it with: mobiledx release {dataset} --run-id {run['run_id']}"
    )
    return report

"""Each ``.tflite`` variant measured as the pipeline runs it and as a phone app runs it.

- **pipeline**: LiteRT on the test split's cached pixels: accuracy, balanced accuracy and agreement
  with the Keras model;
- **on device**: MediaPipe Tasks' ``ImageClassifier`` on the ORIGINAL test image files, through every
  decoding path an app uses (:data:`mobiledx.tflite.ondevice.DECODING_PATHS`: MediaPipe decoding the file,
  libjpeg-turbo at full and at half size) and resized by the runtime itself: per path, accuracy and
  top-1 agreement with the variant's own LiteRT run (the pipeline) and with Keras. The headline
  figures are the WORST path's (single-input models with image files);
- **latency**: ``litert-benchmark`` at 1 and 2 threads (median, p95, initialisation) and whether the
  CPU accelerator runs the whole graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mobiledx.data.cache import RowView
from mobiledx.data.images import read_frame
from mobiledx.evaluation.classification import classification_metrics
from mobiledx.params import Params
from mobiledx.paths import DatasetPaths
from mobiledx.tflite.conversion import TFLiteClassifier
from mobiledx.tflite.ondevice import DECODING_PATHS, MEDIAPIPE_SINGLE_INPUT, OnDeviceClassifier, benchmark, cpu_ops

THREADS = (1, 2)


@dataclass
class TestSet:
    """The test split as export measures it: pixels (lazy), labels, metadata, Keras' predictions, original files."""

    images: RowView
    y_true: np.ndarray
    metadata: np.ndarray | None
    keras_predicted: np.ndarray
    files: list[Path] | None
    files_unavailable: str | None


def _test_files(raw_dir: Path, paths: pd.Series) -> tuple[list[Path] | None, str | None]:
    """The original files of the test images, or ``None`` and the reason they cannot be read."""
    files = [raw_dir / path for path in paths]
    if any("#" in path for path in paths):
        return None, "the dataset is shipped as arrays (no image files)"
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        return None, f"{len(missing)} test image file(s) not found under {raw_dir}, e.g. {missing[0]}"
    return files, None


def load_test_set(dataset: str, params: Params, data, paths: DatasetPaths, encoder) -> TestSet:
    """The test split with Keras' predictions (from evaluate) and, where MediaPipe can run the model, its files."""
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


def measure_variant(flatbuffer: bytes, test: TestSet, classes: list[str], latency_runs: int) -> tuple[dict, np.ndarray]:
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


def on_device_scores(flatbuffers: dict[str, bytes], files: list[Path], num_classes: int,
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


def add_on_device(report: dict, scores: dict[tuple[str, str], np.ndarray], test: TestSet, pipeline: dict,
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


def compare_with_keras(report: dict, keras_metrics: dict) -> None:
    """Each variant's accuracy deltas against the Keras model, and its size and latency ratios to float32."""
    for figures in report.values():
        figures["accuracy_delta_vs_keras"] = figures["accuracy"] - keras_metrics["accuracy"]
        balanced = figures["balanced_accuracy"] - keras_metrics["balanced_accuracy"]
        figures["balanced_accuracy_delta_vs_keras"] = balanced
        figures["size_ratio_to_float32"] = figures["size_bytes"] / report["float32"]["size_bytes"]
        figures["latency_ratio_to_float32"] = figures["latency_ms_1_thread"] / report["float32"]["latency_ms_1_thread"]


def summary_lines(dataset: str, report: dict) -> list[str]:
    """One line per variant: size, its LiteRT figures against Keras, on device, latency and delegation."""
    lines = []
    for variant, figures in report.items():
        on_device = ""
        if "on_device_paths" in figures:
            on_device = (f"; on device (MediaPipe, {len(figures['on_device_paths'])} decoding paths): accuracy "
                         f"{figures['on_device_accuracy']:.3f} at worst, top-1 agreement with this variant's own "
                         f"LiteRT run {figures['on_device_agreement_with_pipeline']:.3f} on the worst path "
                         f"({figures['on_device_worst_path']})")
        delegation = ("fully delegated" if figures["fully_delegated"]
                      else f"NOT fully delegated: {', '.join(figures['cpu_ops'])}")
        size = f"{figures['size_bytes'] / 1e6:.2f} MB ({figures['size_ratio_to_float32']:.2f}x)"
        lines.append(f"{dataset} {variant}: {size}; its LiteRT run on the test pixels: accuracy "
                     f"{figures['accuracy']:.3f} ({figures['accuracy_delta_vs_keras']:+.3f} vs Keras), top-1 agreement "
                     f"with Keras {figures['agreement_with_keras']:.3f}{on_device}; latency "
                     f"{figures['latency_ms_1_thread']:.2f} ms 1 thread / {figures['latency_ms_2_threads']:.2f} ms "
                     f"2 threads, {delegation}")
    return lines

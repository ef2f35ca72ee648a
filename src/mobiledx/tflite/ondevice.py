"""What a phone app runs: TFLite Model Metadata, MediaPipe Tasks' ImageClassifier and LiteRT's benchmark.

- :func:`write_metadata` embeds the TFLite Model Metadata that MediaPipe Tasks (and the older Task
  Library) require: name, description, version, author, licence, the image input with its
  normalisation (the models take RGB pixels in [0, 255] and normalise themselves: mean 0, std 1),
  the patient-metadata input when there is one, and the class-score output with its labels file.
  It writes the final file, so it also stores each distinct zero-point vector once.
- :class:`OnDeviceClassifier` classifies original image files exactly as an app does: MediaPipe's
  own decoding (EXIF orientation applied) and preprocessing (the whole frame stretched to the input
  size, see :func:`mobiledx.data.images.device_resize`).
- :func:`benchmark` runs ``litert-benchmark`` (ai-edge-litert's own tool, on LiteRT's
  ``CompiledModel``): median and p95 latency, initialisation time and whether the graph is fully
  delegated to the CPU accelerator (XNNPACK); :func:`cpu_ops` names the ops that are not.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mobiledx import __version__
from mobiledx.data.licences import licence_text
from mobiledx.params import Params

if TYPE_CHECKING:
    from mobiledx.evaluation.operating_point import OperatingPoint

MEDIAPIPE_SINGLE_INPUT = "MediaPipe's ImageClassifier runs single-input models only"

# How an app turns an image file into the pixels MediaPipe classifies; each gives slightly different pixels
# (JPEG decoders differ by a few levels), so on-device figures are measured through each of them.
DECODING_PATHS = {
    "mediapipe_file": "MediaPipe decoding the file itself (mp.Image.create_from_file: desktop and Python apps, the "
                      "docs' snippet)",
    "libjpeg_turbo": "libjpeg-turbo at full size, EXIF orientation applied, the frame handed to MediaPipe (Pillow "
                     "here; Android's BitmapFactory and OpenCV use the same decoder and settings)",
    "libjpeg_turbo_half": "libjpeg-turbo at half size in the DCT domain, the frame handed to MediaPipe (Android's "
                          "BitmapFactory with inSampleSize 2, how apps load large photos); JPEGs at least twice "
                          "the model's input size only",
}
NOT_MEASURED_DECODERS = ("iOS (ImageIO, UIImage/CGImage) and a phone's own Android build were not run here; "
                         "their JPEG decoders may differ from these by a few levels as well")
_PARSER_VERSION_MODULE = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"


def _metadata_writers():
    """mediapipe's metadata writer modules, importable.

    Since mediapipe 0.10.30 the wheels lack the compiled ``_pywrap_metadata_version`` that
    ``mediapipe.tasks.python.metadata.metadata`` imports, only to fill
    ``ModelMetadata.min_parser_version``. Every field mobiledx writes (image and feature inputs with
    tensor-level normalisation, a classification output with a label file) is read by metadata
    parser 1.0.0: no subgraph input/output process units, tensor groups, custom metadata,
    vocabulary or versioned associated files. So a stand-in module answering "1.0.0" is registered
    when the compiled one is missing; ``tests/unit/test_ondevice.py`` checks that the written
    metadata uses none of those features.
    """
    try:
        __import__(_PARSER_VERSION_MODULE)
    except ImportError:
        parts = _PARSER_VERSION_MODULE.split(".")
        for depth in range(3, len(parts)):
            name = ".".join(parts[:depth])
            if name not in sys.modules:
                package = types.ModuleType(name)
                package.__path__ = []
                sys.modules[name] = package
        stand_in = types.ModuleType(_PARSER_VERSION_MODULE)
        stand_in.GetMinimumMetadataParserVersion = lambda metadata_buffer: "1.0.0"
        sys.modules[_PARSER_VERSION_MODULE] = stand_in
        setattr(sys.modules[".".join(parts[:-1])], parts[-1], stand_in)
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_info, metadata_writer, writer_utils

    return metadata_info, metadata_writer, writer_utils


def write_metadata(model: bytes, *, labels: list[str], name: str, description: str, version: str, author: str,
                   license: str, metadata_description: str | None = None,
                   image_licenses: dict[str, int] | None = None) -> bytes:
    """``model`` with TFLite Model Metadata and ``labels`` packed in (as ``labels.txt``).

    Inputs are described in the model's own input order: the image (RGB, normalisation mean 0 and
    std 1, since the model takes [0, 255] pixels and normalises them itself) and, for a model with
    a ``metadata`` input, that float vector (``metadata_description`` says how it is encoded; no
    normalisation). The output is a classification head with one score per label. The licence field
    is :func:`mobiledx.data.licences.licence_text`: a non-commercial licence adds its limitation
    (``image_licenses``: images per licence, when the source states one per image).
    """
    metadata_info, metadata_writer, writer_utils = _metadata_writers()

    class Writer(metadata_writer.MetadataWriter):
        def add_general_info(self, *args, **kwargs):
            # MetadataWriter.add_general_info forwards only name and description; the schema also has
            # version, author and licence (ModelMetadata), set here on the same general-info record.
            self._general_md = metadata_info.GeneralMd(name=name, version=version, description=description,
                                                       author=author,
                                                       licenses=licence_text(license, image_licenses))
            return self

    writer = Writer.create(bytearray(model))
    try:
        writer.add_general_info()
        for tensor in writer_utils.get_input_tensor_names(bytearray(model)):
            if "metadata" in tensor.lower():
                writer.add_feature_input(name="metadata", description=metadata_description or "patient metadata")
            else:
                writer.add_image_input(norm_mean=[0.0], norm_std=[1.0],
                                       color_space_type=metadata_writer.MetadataWriter.color_space_types.RGB)
        writer.add_classification_output(
            labels=metadata_writer.Labels().add(list(labels)), name="probabilities",
            description=f"one probability per class, in the order of labels.txt: {', '.join(labels)}")
        populated, _ = writer.populate()
    finally:
        del writer  # its __del__ otherwise complains at interpreter exit
    return _repack(bytes(populated))


def _repack(model: bytes) -> bytes:
    """The populated model with its zero points shared and its packed files dated 1980-01-01.

    The flatbuffer goes through :func:`mobiledx.tflite.quantization.share_zero_points` (after the populator,
    which rebuilds the flatbuffer itself). MediaPipe's populator stamps each packed file (a zip
    appended to the flatbuffer) with the current time, so the same model would give different bytes
    every run: the archive is rebuilt as the populator builds it, appended after the flatbuffer, with
    the same names, contents and compression and a fixed date.
    """
    import io
    import zipfile

    from mobiledx.tflite.quantization import share_zero_points

    with zipfile.ZipFile(io.BytesIO(model)) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
        start = min(info.header_offset for info, _ in members)  # absolute: zipfile adds the prefix length
    rebuilt = io.BytesIO(share_zero_points(model[:start]))
    rebuilt.seek(0, io.SEEK_END)
    with zipfile.ZipFile(rebuilt, "a") as archive:
        for info, data in members:
            pinned = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            pinned.external_attr = info.external_attr
            archive.writestr(pinned, data, compress_type=info.compress_type)
    return rebuilt.getvalue()


def read_metadata(model: bytes) -> dict:
    """The model's metadata as a dict (MediaPipe's JSON form) and the packed file names (``files``)."""
    _metadata_writers()
    from mediapipe.tasks.python.metadata import metadata

    displayer = metadata.MetadataDisplayer.with_model_buffer(bytearray(model))
    return {**json.loads(displayer.get_metadata_json()), "files": displayer.get_packed_associated_file_list()}


class OnDeviceClassifier:
    """MediaPipe Tasks' ``ImageClassifier`` on a ``.tflite`` with metadata, as an Android or iOS app runs it.

    :meth:`classify_file` hands the runtime the original file; it decodes it (EXIF orientation
    applied) and resizes the whole frame itself. Scores come back per class index, exactly the
    model's output (MediaPipe applies no softmax of its own).
    """

    def __init__(self, model: bytes, num_classes: int) -> None:
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_buffer=bytes(model)),
                                                running_mode=vision.RunningMode.IMAGE, max_results=-1)
        self.num_classes = num_classes
        self._classifier = vision.ImageClassifier.create_from_options(options)

    def _scores(self, image) -> tuple[np.ndarray, list[str]]:
        result = self._classifier.classify(image)
        scores = np.zeros(self.num_classes, np.float32)
        names = [""] * self.num_classes
        for category in result.classifications[0].categories:
            scores[category.index] = category.score
            names[category.index] = category.category_name
        return scores, names

    def classify_file(self, path: str | os.PathLike) -> np.ndarray:
        """Scores for the image file ``path``, decoded and preprocessed by MediaPipe."""
        import mediapipe as mp

        image = mp.Image.create_from_file(str(path))  # kept alive while MediaPipe reads it
        return self._scores(image)[0]

    def classify_frame(self, rgb: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Scores and class names for an RGB uint8 frame of any size."""
        import mediapipe as mp

        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb, dtype=np.uint8))
        return self._scores(image)

    def close(self) -> None:
        self._classifier.close()

    def __enter__(self) -> OnDeviceClassifier:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def benchmark(model: bytes | str | os.PathLike, threads: int, runs: int, warmup: int = 5) -> dict:
    """``litert-benchmark`` on the CPU: ``median_ms``, ``p95_ms``, ``init_ms`` and ``fully_delegated``."""
    with tempfile.TemporaryDirectory(prefix="mobiledx-benchmark-") as scratch:
        path = Path(model) if not isinstance(model, bytes) else Path(scratch) / "model.tflite"
        if isinstance(model, bytes):
            path.write_bytes(model)
        result = Path(scratch) / "result.json"
        done = subprocess.run(
            [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model", "--model", str(path),
             "--num_threads", str(threads), "--num_runs", str(runs), "--warmup_runs", str(warmup),
             "--result_json", str(result)],
            capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not result.exists():
            raise RuntimeError(f"litert-benchmark failed on {path.name} (exit {done.returncode}): "
                               f"{(done.stderr or done.stdout)[-2000:]}")
        report = json.loads(result.read_text())
    latency = report["latency"]
    return {"median_ms": float(latency["median_ms"]), "p95_ms": float(latency["p95_ms"]),
            "init_ms": float(latency["init_ms"]), "fully_delegated": bool(report["fully_accelerated"])}


def cpu_ops(model: bytes) -> list[str]:
    """Ops the CPU accelerator (XNNPACK) does not take, left to LiteRT's reference kernels (empty: fully delegated).

    LiteRT's interpreter applies XNNPACK by default and lists one ``DELEGATE`` node per delegated
    partition after the original ops; an op is delegated iff it lies between a partition's inputs
    and outputs.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(model), num_threads=1)
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()  # the only API that lists ops with their delegate partitions
    original = [op for op in ops if op["op_name"] != "DELEGATE"]
    producer = {int(tensor): op for op in original for tensor in op["outputs"]}
    delegated: set[int] = set()
    for partition in (op for op in ops if op["op_name"] == "DELEGATE"):
        inputs, pending = {int(t) for t in partition["inputs"]}, [int(t) for t in partition["outputs"]]
        while pending:
            tensor = pending.pop()
            op = producer.get(tensor)
            if op is None or tensor in inputs or op["index"] in delegated:
                continue
            delegated.add(op["index"])
            pending.extend(int(t) for t in op["inputs"] if t >= 0)
    return [op["op_name"] for op in original if op["index"] not in delegated]


def model_description(dataset: str, params: Params, data, float32: bytes, metadata_encoding,
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

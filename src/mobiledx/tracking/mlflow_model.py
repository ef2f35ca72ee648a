"""Logging the release bundle as an MLflow 3 logged model (a ``pyfunc`` running the ``.tflite`` with LiteRT).

The export stage logs, in the training's run, the model ``classifier``: the model code
:mod:`mobiledx.tracking.pyfunc_model`, every ``.tflite`` variant, ``labels.txt`` and the model card as its
artifacts, a tensor signature (uint8 images in, one float32 probability per class out, a
``variant`` param) and one test image as input example. The run's headline metrics are linked to
it, and it is what the registry versions (:func:`mobiledx.tracking.model_registry.register_run`), so
``mlflow.pyfunc.load_model("models:/<dataset>@champion")`` classifies images. The plain ``tflite/``
artifacts of the run stay, for people who only want the files.
"""

from __future__ import annotations

import logging
from importlib import metadata as package_metadata
from pathlib import Path

import numpy as np

from mobiledx.paths import VARIANTS, DatasetPaths
from mobiledx.tracking import pyfunc_model

MODEL_NAME = "classifier"  # the logged model's name in its run
MODEL_TYPE = "tflite-classifier"
RUNTIME_PACKAGES = ("mlflow", "numpy", "ai-edge-litert")  # all that loading the model needs


def pip_requirements() -> list[str]:
    """The pinned packages the pyfunc needs (given, so MLflow does not infer them in a subprocess)."""
    return [f"{name}=={package_metadata.version(name)}" for name in RUNTIME_PACKAGES]


def signature(image_size: int, num_classes: int, metadata_width: int | None, default_variant: str):
    """uint8 ``(-1, size, size, 3)`` images (and float32 metadata) in; float32 ``(-1, classes)`` out."""
    from mlflow.models import ModelSignature
    from mlflow.types import DataType, ParamSchema, ParamSpec, Schema, TensorSpec

    inputs = [TensorSpec(np.dtype(np.uint8), (-1, image_size, image_size, 3), "image")]
    if metadata_width:
        inputs.append(TensorSpec(np.dtype(np.float32), (-1, metadata_width), "metadata"))
    return ModelSignature(
        inputs=Schema(inputs),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, num_classes), "probabilities")]),
        params=ParamSchema([ParamSpec("variant", DataType.string, default_variant)]),
    )


def log_bundle_model(paths: DatasetPaths, *, example: np.ndarray, metadata_example: np.ndarray | None,
                     num_classes: int, default_variant: str, metrics: dict[str, float], tags: dict[str, str],
                     params: dict[str, str] | None = None):
    """Log the bundle in ``paths.export`` (its ``.tflite`` variants, labels, model card) as the active run's model
    ``classifier``; returns MLflow's ``ModelInfo``.

    ``example``: one uint8 image ``(1, size, size, 3)`` (with ``metadata_example`` ``(1, M)`` for a
    metadata model); ``metrics`` are logged to the run and linked to the model; ``params`` (the export
    settings) are the model's own, since every export logs a new model while the run may be the same.
    """
    import mlflow

    logging.getLogger("mlflow.pyfunc").setLevel(logging.WARNING)  # not "Validating input example ..." every export
    artifacts = {f"model_{variant}": str(path) for variant in VARIANTS if (path := paths.tflite(variant)).exists()}
    artifacts.update({"labels": str(paths.labels), "model_card": str(paths.model_cards[0])})
    width = None if metadata_example is None else int(metadata_example.shape[1])
    input_example = example if width is None else {"image": example, "metadata": metadata_example}
    info = mlflow.pyfunc.log_model(
        name=MODEL_NAME,
        python_model=str(Path(pyfunc_model.__file__)),
        artifacts=artifacts,
        model_config={"variant": default_variant},
        signature=signature(int(example.shape[1]), num_classes, width, default_variant),
        input_example=input_example,
        pip_requirements=pip_requirements(),
        model_type=MODEL_TYPE,
        params=params,
        tags=tags,
    )
    mlflow.log_metrics(metrics, model_id=info.model_id)
    return info

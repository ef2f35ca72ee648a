"""The release bundle as an MLflow ``pyfunc`` model: runs a bundle's ``.tflite`` with LiteRT.

This file is logged as MLflow "model from code" (``mlflow.pyfunc.log_model(python_model=<this
file>, artifacts=...)``): MLflow copies it into the model and runs it when the model is loaded, so it
imports nothing from mobiledx; loading needs only ``mlflow``, ``numpy`` and ``ai-edge-litert``::

    model = mlflow.pyfunc.load_model("models:/demo-skin@champion")
    probabilities = model.predict(images)  # (N, size, size, 3) uint8 RGB -> (N, classes) float32
    model.predict(images, params={"variant": "float32"})

Input: whole RGB frames already resized to the model's square input (stretched, as MediaPipe's
ImageClassifier and ``mobiledx predict`` do). Output: one probability per class, in the order of the
``labels`` artifact. The ``variant`` param picks the ``.tflite`` (default: the one the model was
logged with, ``int8`` unless said otherwise).
"""

from __future__ import annotations

import mlflow
import numpy as np


class TFLiteBundle(mlflow.pyfunc.PythonModel):
    """Every ``.tflite`` variant of a bundle (artifacts ``model_<variant>.tflite``) behind one ``predict``."""

    def load_context(self, context) -> None:
        self.paths = {key.removeprefix("model_"): path for key, path in context.artifacts.items()
                      if key.startswith("model_")}
        with open(context.artifacts["labels"], encoding="utf-8") as handle:
            self.labels = [line.strip() for line in handle if line.strip()]
        self.default_variant = (context.model_config or {}).get("variant", "int8")
        self.interpreters = {}

    def _interpreter(self, variant: str):
        if variant not in self.paths:
            raise ValueError(f"variant {variant!r} is not in this bundle; it has: {', '.join(sorted(self.paths))}")
        if variant not in self.interpreters:
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(model_path=self.paths[variant], num_threads=1)
            interpreter.allocate_tensors()
            self.interpreters[variant] = interpreter
        return self.interpreters[variant]

    def predict(self, context, model_input: np.ndarray, params: dict | None = None) -> np.ndarray:
        """Class probabilities of each image, one image at a time (the model's batch is 1).

        ``model_input``: the images, or for a model with a patient-metadata input
        ``{"image": images, "metadata": (N, M) float32 encoded as in metadata_encoder.json}``.
        """
        arrays = dict(model_input) if isinstance(model_input, dict) else {"image": model_input}
        variant = (params or {}).get("variant") or self.default_variant
        interpreter = self._interpreter(variant)
        details = {("metadata" if "metadata" in d["name"] else "image"): d for d in interpreter.get_input_details()}
        if set(details) != set(arrays):
            raise ValueError(f"this model takes {' and '.join(sorted(details))}; got {' and '.join(sorted(arrays))}")
        images = np.asarray(arrays["image"])
        expected = tuple(details["image"]["shape"][1:])
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"expected (N, {', '.join(map(str, expected))}) uint8 RGB images, got {images.shape}")
        output = interpreter.get_output_details()[0]
        probabilities = np.empty((len(images), len(self.labels)), np.float32)
        for i in range(len(images)):
            for role, detail in details.items():
                interpreter.set_tensor(detail["index"], np.asarray(arrays[role][i : i + 1], dtype=detail["dtype"]))
            interpreter.invoke()
            probabilities[i] = interpreter.get_tensor(output["index"])[0]
        return probabilities


mlflow.models.set_model(TFLiteBundle())

"""Model factory: an ImageNet-style backbone with a small classification head.

The model takes float32 RGB pixels in [0, 255] and does its own preprocessing, so the exported
``.tflite`` needs nothing but resized pixels.
"""

from __future__ import annotations

from pathlib import Path


class WeightsUnavailableError(RuntimeError):
    """Requested backbone weights cannot be loaded (offline, missing file)."""


def _backbone_weights(weights: str) -> str | None:
    choice = str(weights).strip()
    if choice.lower() in ("none", "null", ""):
        return None
    if choice.lower() == "imagenet":
        return "imagenet"
    if not Path(choice).is_file():
        raise WeightsUnavailableError(
            f"train.weights={choice!r} is neither 'imagenet', 'none' nor an existing weights file; "
            "give the path of a Keras no-top weights file (.h5 / .weights.h5)"
        )
    return choice


def build_classifier(
    num_classes: int,
    image_size: int,
    alpha: float = 1.0,
    weights: str = "imagenet",
    dense_units: int = 512,
    dropout: float = 0.2,
    bn_momentum: float | None = None,
):
    """MobileNetV2 backbone → GAP → Dense(dense_units, ReLU) → Dropout → softmax (paper 000's head).

    ``bn_momentum`` replaces the backbone's BatchNormalization momentum (0.999 in Keras): needed when
    training from scratch, where 0.999 leaves the inference-mode statistics near their initial values.
    """
    import keras

    source = _backbone_weights(weights)
    try:
        backbone = keras.applications.MobileNetV2(
            input_shape=(image_size, image_size, 3), alpha=alpha, include_top=False, weights=source
        )
    except Exception as error:  # Keras raises a bare Exception on a failed download
        if source != "imagenet":
            raise
        raise WeightsUnavailableError(
            f"could not load ImageNet weights for MobileNetV2(alpha={alpha}, {image_size}px): {error}. "
            "Fix: with internet, run once to cache them in ~/.keras/models/; offline, copy the Keras file "
            f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{image_size}_no_top.h5 there or set "
            "train.weights to its path; or train from scratch with train.weights=none"
        ) from error
    if bn_momentum is not None:
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = bn_momentum

    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_minus1_1")(inputs)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="mobilenetv2_classifier")


def load_model(path: str | Path):
    """Load a trained ``.keras`` model with Keras safe mode on (no arbitrary code from the file)."""
    import keras

    return keras.models.load_model(path, safe_mode=True)

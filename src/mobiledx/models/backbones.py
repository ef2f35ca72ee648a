"""Backbone factory: every architecture of the seed papers behind one name, with its own preprocessing.

A backbone maps float32 RGB pixels in [0, 255] to a feature map (or, for paper 003's MLP, a vector).
Preprocessing is built into the graph as plain layers, so exported ``.tflite`` files take raw pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # Keras "caffe" mode (VGG, ResNet v1)
TORCH_MEAN_RGB = (123.675, 116.28, 103.53)  # Keras "torch" mode (DenseNet): (0.485, 0.456, 0.406) x 255
TORCH_STD_RGB = (58.395, 57.12, 57.375)  # (0.229, 0.224, 0.225) x 255


class WeightsUnavailableError(RuntimeError):
    """Requested backbone weights cannot be loaded (offline, missing file)."""


@dataclass(frozen=True)
class Backbone:
    """How to build one architecture: Keras constructor, input preprocessing and attention tap."""

    name: str
    constructor: str | None  # attribute of keras.applications; None for the paper-003 models
    preprocessing: str  # "minus1_1" | "caffe" | "torch" | "unit"
    min_size: int = 32
    uses_alpha: bool = False
    attention_layer: str | None = None  # where paper 004 inserts Soft-Attention (None = final features)


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in [
        Backbone("mobilenetv2", "MobileNetV2", "minus1_1", uses_alpha=True, attention_layer="block_14_depthwise_relu"),
        Backbone("mobilenet", "MobileNet", "minus1_1", uses_alpha=True, attention_layer="conv_dw_13_relu"),
        Backbone(
            "mobilenetv3small", "MobileNetV3Small", "minus1_1", uses_alpha=True, attention_layer="<before conv_1>"
        ),
        Backbone(
            "mobilenetv3large", "MobileNetV3Large", "minus1_1", uses_alpha=True, attention_layer="<before conv_1>"
        ),
        Backbone("nasnetmobile", "NASNetMobile", "minus1_1"),
        Backbone("vgg19", "VGG19", "caffe"),
        Backbone("inceptionv3", "InceptionV3", "minus1_1", min_size=75),
        Backbone("resnet50", "ResNet50", "caffe"),
        Backbone("resnet101", "ResNet101", "caffe"),
        Backbone("resnet152", "ResNet152", "caffe"),
        Backbone("resnet50v2", "ResNet50V2", "minus1_1"),
        Backbone("resnet101v2", "ResNet101V2", "minus1_1"),
        Backbone("resnet152v2", "ResNet152V2", "minus1_1"),
        Backbone("inceptionresnetv2", "InceptionResNetV2", "minus1_1", min_size=75),
        Backbone("densenet201", "DenseNet201", "torch"),
        Backbone("cnn15", None, "unit"),
        Backbone("mlp", None, "unit"),
    ]
}


def backbone_spec(name: str) -> Backbone:
    """The registered backbone called ``name`` (case-insensitive)."""
    key = str(name).strip().lower()
    if key not in BACKBONES:
        raise ValueError(f"train.backbone={name!r} is unknown; choose one of {sorted(BACKBONES)}")
    return BACKBONES[key]


def weights_source(weights: str) -> str | None:
    """Normalise ``train.weights``: ``None`` (from scratch), ``"imagenet"`` or an existing file path."""
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


def preprocessing_layers(kind: str) -> list:
    """Layers mapping [0, 255] RGB pixels to what the backbone was trained on (Keras' ``preprocess_input``)."""
    import keras

    from mobiledx.models.layers import ChannelReverse

    if kind == "minus1_1":  # MobileNets, NASNet, Inception, ResNetV2: [-1, 1]
        return [keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_minus1_1")]
    if kind == "caffe":  # VGG, ResNet (v1): RGB→BGR, ImageNet mean subtracted, no scaling
        return [
            ChannelReverse(name="rgb_to_bgr"),
            keras.layers.Normalization(mean=CAFFE_MEAN_BGR, variance=(1.0, 1.0, 1.0), name="imagenet_centering"),
        ]
    if kind == "torch":  # DenseNet: ImageNet mean/std per channel (on the 0-255 scale)
        return [
            keras.layers.Normalization(
                mean=TORCH_MEAN_RGB, variance=tuple(s * s for s in TORCH_STD_RGB), name="imagenet_standardise"
            )
        ]
    if kind == "unit":  # paper 003's own networks: [0, 1]
        return [keras.layers.Rescaling(1.0 / 255, name="to_unit")]
    raise ValueError(f"unknown preprocessing {kind!r}")


def _cnn15(image_size: int):
    """Paper 003's custom CNN: five conv blocks (32-64-64-128-128-256-512 filters) with BN, pooling, dropout."""
    import keras

    layers = keras.layers
    inputs = keras.Input((image_size, image_size, 3))
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D()(x)
    for filters in ((64, 64), (128, 128), (256,), (512,)):
        for count in filters:
            x = layers.Conv2D(count, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    for units in (512, 128, 64):
        x = layers.Dense(units, activation="relu")(x)
        x = layers.Dropout(0.25)(x)
    return keras.Model(inputs, x, name="cnn15")


def _mlp(image_size: int):
    """Paper 003's DNN baseline: flattened pixels → Dense 2048-1024-512-256-128-64-32 (ReLU)."""
    import keras

    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Flatten()(inputs)
    for units in (2048, 1024, 512, 256, 128, 64, 32):
        x = keras.layers.Dense(units, activation="relu")(x)
    return keras.Model(inputs, x, name="mlp")


def build_backbone(name: str, image_size: int, alpha: float = 1.0, weights: str = "none"):
    """The Keras backbone ``name`` without its top, for ``image_size`` px RGB input (preprocessed).

    ``weights``: ``imagenet`` (from the Keras cache; a clear error naming the fix when unavailable),
    ``none``, or a local no-top weights file.
    """
    import keras

    spec = backbone_spec(name)
    if image_size < spec.min_size:
        raise ValueError(f"{spec.name} needs images of at least {spec.min_size} px; ingest.image_size is {image_size}")
    source = weights_source(weights)
    if spec.constructor is None:
        if source is not None:
            raise WeightsUnavailableError(f"{spec.name} (paper 003) has no pretrained weights; set train.weights=none")
        return (_cnn15 if spec.name == "cnn15" else _mlp)(image_size)
    constructor: Callable = getattr(keras.applications, spec.constructor)
    options = {"input_shape": (image_size, image_size, 3), "include_top": False, "weights": source}
    if spec.uses_alpha:
        options["alpha"] = alpha
    if spec.constructor.startswith("MobileNetV3"):
        options["include_preprocessing"] = False  # preprocessing_layers() does it, as for the others
    try:
        return constructor(**options)
    except Exception as error:  # Keras raises a bare Exception on a failed download
        if source != "imagenet":
            raise
        raise WeightsUnavailableError(
            f"could not load ImageNet weights for {spec.constructor}("
            f"{'alpha=' + str(alpha) + ', ' if spec.uses_alpha else ''}{image_size}px): {error}. Fix: with internet, "
            "run once to cache them in ~/.keras/models/; offline, "
            "copy the matching Keras no-top weights file there or set train.weights to its path; "
            "or train from scratch with train.weights=none"
        ) from error


def attention_features(backbone, name: str):
    """The feature map paper 004 feeds to Soft-Attention for this backbone (a Keras tensor).

    MobileNetV2 uses ``block_14_depthwise_relu`` (the seed code's 7×7×960 tap at 224 px); MobileNet
    (``conv_dw_13_relu``) and MobileNetV3 (input of ``conv_1``) replace their last 1×1 convolutions,
    i.e. attend to the features before them; other backbones attend to their final feature map.
    """
    spec = backbone_spec(name)
    if spec.attention_layer is None:
        return backbone.output
    if spec.attention_layer == "<before conv_1>":
        return backbone.get_layer("conv_1").input
    return backbone.get_layer(spec.attention_layer).output

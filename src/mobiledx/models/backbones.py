"""Backbone factory: every architecture of the seed papers behind one name, with its own preprocessing.

A backbone maps float32 RGB pixels in [0, 255] to a feature map (or, for paper 003's MLP, a vector).
Preprocessing is built into the graph as plain layers, so exported ``.tflite`` files take raw pixels.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mobiledx.errors import MobiledxError

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # Keras "caffe" mode (VGG, ResNet v1)
TORCH_MEAN_RGB = (123.675, 116.28, 103.53)  # Keras "torch" mode (DenseNet): (0.485, 0.456, 0.406) x 255
TORCH_STD_RGB = (58.395, 57.12, 57.375)  # (0.229, 0.224, 0.225) x 255


PROBE_TIMEOUT_S = 1.5  # how long the download host may take to accept a connection before weights count as offline
KERAS_WEIGHTS_HOST = "https://storage.googleapis.com/tensorflow/keras-applications/"  # every backbone's weights
# How the Keras cache names each backbone's ImageNet weights files (keras.applications, Keras 3.15): enough to
# know, without importing Keras, that no file of the backbone is cached (see preflight_weights).
WEIGHTS_FILE_PREFIX = {
    "mobilenetv2": "mobilenet_v2_weights_", "mobilenet": "mobilenet_", "mobilenetv3small": "weights_mobilenet_v3_small",
    "mobilenetv3large": "weights_mobilenet_v3_large", "nasnetmobile": "nasnet_mobile", "vgg19": "vgg19_weights",
    "inceptionv3": "inception_v3_weights", "resnet50": "resnet50_weights", "resnet101": "resnet101_weights",
    "resnet152": "resnet152_weights", "resnet50v2": "resnet50v2_weights", "resnet101v2": "resnet101v2_weights",
    "resnet152v2": "resnet152v2_weights", "inceptionresnetv2": "inception_resnet_v2_weights",
    "densenet201": "densenet201_weights",
}


class WeightsUnavailableError(MobiledxError, RuntimeError):
    """Requested backbone weights cannot be loaded (offline, missing file): one line naming the fix."""


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
    if source != "imagenet":
        return constructor(**options)
    what = f"{spec.constructor}({'alpha=' + str(alpha) + ', ' if spec.uses_alpha else ''}{image_size}px)"
    served: list[Path] = []  # the cached weights files Keras was handed
    try:
        with _fail_fast_downloads(what, served):
            return constructor(**options)
    except WeightsUnavailableError:
        raise
    except Exception as error:  # Keras raises a bare Exception on a failed download
        if not _is_download_failure(error):
            raise
        if served:  # the file was there but does not load (truncated copy, wrong file under the right name)
            raise WeightsUnavailableError(
                f"train.weights=imagenet: the cached ImageNet weights of {what}, {served[-1]}, cannot be read "
                f"({_one_line(error)}). Fix: delete it (Keras downloads it again on a machine with internet) or "
                f"replace it with a good copy, or train from scratch with train.weights=none") from None
        raise WeightsUnavailableError(
            f"could not load ImageNet weights for {what}: {_one_line(error)}. Fix: with internet, run once to cache "
            "them in ~/.keras/models/; offline, copy the matching Keras no-top weights file there or set "
            "train.weights to its path; or train from scratch with train.weights=none"
        ) from None  # the message says it all: no chained traceback


def _is_download_failure(error: Exception) -> bool:
    return isinstance(error, OSError) or "URL fetch failure" in str(error)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def keras_cache_path(fname: str, cache_subdir: str = "models", cache_dir: str | None = None) -> Path:
    """Where Keras' ``get_file`` keeps ``fname``: ``$KERAS_HOME`` (default ``~/.keras``), or
    ``/tmp/.keras`` when that is not writable, then ``cache_subdir``. A home folder that does not exist
    yet counts as writable when it can be made (Keras makes it when it is imported)."""
    base = os.path.expanduser(cache_dir if cache_dir is not None else _keras_home())
    writable = os.access(base, os.W_OK) if os.path.exists(base) else os.access(os.path.dirname(base) or ".", os.W_OK)
    if not writable:
        base = os.path.join("/tmp", ".keras")
    return Path(base) / cache_subdir / fname


def _keras_home() -> str:
    """Keras' home folder: its own setting once Keras is imported (it reads ``$KERAS_HOME`` at import), else
    the same rule without importing it."""
    import sys

    if "keras" in sys.modules:
        try:
            from keras.src.backend.config import keras_home

            return keras_home()
        except ImportError:
            pass
    if "KERAS_HOME" in os.environ:
        return os.environ["KERAS_HOME"]
    home = os.path.expanduser("~")
    return os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")


def preflight_weights(backbone: str, weights: str) -> None:
    """Fail within about :data:`PROBE_TIMEOUT_S` seconds, without importing Keras, when ``train.weights:
    imagenet`` cannot possibly load: no weights file of ``backbone`` in the Keras cache and the download
    host unreachable. Call it before the slow imports (TensorFlow) of a stage; :func:`build_backbone`
    checks the exact file again."""
    spec = backbone_spec(backbone)
    if weights_source(weights) != "imagenet" or spec.constructor is None:
        return  # from scratch, a local file (checked by weights_source), or paper 003 (refused at build)
    prefix = WEIGHTS_FILE_PREFIX.get(spec.name)
    folder = keras_cache_path(prefix, "models").parent if prefix else None
    if folder is None or (folder.is_dir() and any(p.name.startswith(prefix) for p in folder.iterdir())):
        return
    reason = unreachable(KERAS_WEIGHTS_HOST)
    if reason is not None:
        raise WeightsUnavailableError(
            f"train.weights=imagenet: no ImageNet weights of {spec.constructor} are cached in {folder} and they "
            f"cannot be downloaded ({reason}). Fix: copy the Keras no-top weights file ({prefix}..., from "
            f"{KERAS_WEIGHTS_HOST}) there on this machine, or set train.weights to that file's path, or train from "
            f"scratch with train.weights=none")


def unreachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why ``url``'s host (or the proxy that serves it) cannot be reached within ``timeout`` seconds,
    or ``None`` when it accepts a connection. Name resolution counts against the timeout too: it runs
    in a thread that is abandoned, not waited for, when it hangs."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxied = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxied.hostname or host, proxied.port or 8080
    outcome: dict[str, BaseException | None] = {}

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome["error"] = None
        except OSError as error:
            outcome["error"] = error

    thread = threading.Thread(target=connect, name="weights-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if "error" not in outcome:
        return f"{host}:{port} did not answer within {timeout:g} s"
    error = outcome["error"]
    return None if error is None else f"{host}:{port}: {_one_line(error) or type(error).__name__}"


@contextlib.contextmanager
def _fail_fast_downloads(what: str, served: list[Path]) -> Iterator[None]:
    """While Keras builds an application, its weight download (``keras.src.utils.file_utils.get_file``, which
    every ``keras.applications`` module calls) is guarded: a cached file is used as Keras would use it;
    otherwise the host is probed first (:func:`unreachable`, ~1.5 s at most) and an unreachable one raises
    :class:`WeightsUnavailableError` at once, naming the file and where to put it, instead of a long wait
    and Keras' chained traceback. The paths handed to Keras are appended to ``served``. A Keras without
    that function is left as it is."""
    try:
        from keras.src.utils import file_utils
    except ImportError:  # another Keras layout: the caller's fallback still names the fix
        yield
        return
    real_get_file = getattr(file_utils, "get_file", None)
    if real_get_file is None:
        yield
        return

    def guarded_get_file(fname=None, origin=None, *args, cache_subdir="datasets", cache_dir=None, **kwargs):
        target = keras_cache_path(fname or os.path.basename(urllib.parse.urlsplit(origin or "").path),
                                  cache_subdir, cache_dir)
        if not target.is_file() and origin:
            reason = unreachable(origin)
            if reason is not None:
                raise WeightsUnavailableError(
                    f"train.weights=imagenet: the ImageNet weights of {what} are not cached and cannot be "
                    f"downloaded ({reason}). Fix: copy {target.name} (from {origin}) to {target} on this "
                    f"machine, or set train.weights to that file's path, or train from scratch with "
                    f"train.weights=none")
        try:
            path = real_get_file(fname, origin, *args, cache_subdir=cache_subdir, cache_dir=cache_dir, **kwargs)
            served.append(Path(path))
            return path
        except Exception as error:
            if not _is_download_failure(error) and not isinstance(error, ValueError):
                raise
            cached = "is cached but incomplete or corrupt" if target.is_file() else "could not be downloaded"
            raise WeightsUnavailableError(
                f"train.weights=imagenet: {target.name}, the ImageNet weights of {what}, {cached} "
                f"({_one_line(error)}). Fix: copy a good {target.name} (from {origin}) to {target}, or set "
                f"train.weights to that file's path, or train from scratch with train.weights=none") from None

    file_utils.get_file = guarded_get_file
    try:
        yield
    finally:
        file_utils.get_file = real_get_file


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

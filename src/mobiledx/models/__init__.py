"""Model factory: a backbone (see ``backbones``) with one of the papers' heads and optional metadata.

The model's first input, ``image``, takes float32 RGB pixels in [0, 255] and does its own
preprocessing, so the exported ``.tflite`` needs nothing but resized pixels. Models with metadata
have a second input, ``metadata``: the numeric vector of ``mobiledx.models.patient_features.MetadataEncoder``.
The output is always one probability per class (a binary sigmoid head outputs ``[1 - p, p]``, p = sigmoid of
one logit).
"""

from __future__ import annotations

from mobiledx.models.backbones import (
    BACKBONES,
    WeightsUnavailableError,
    attention_features,
    backbone_spec,
    build_backbone,
    preprocessing_layers,
)
from mobiledx.params import HEADS, TrainParams

__all__ = ["BACKBONES", "HEADS", "WeightsUnavailableError", "build_classifier", "backbone_layer"]


def build_classifier(
    num_classes: int,
    image_size: int,
    backbone: str = TrainParams.backbone,
    alpha: float = TrainParams.alpha,
    weights: str = TrainParams.weights,
    head: str = TrainParams.head,
    dense_units: int = TrainParams.dense_units,
    dropout: float = TrainParams.dropout,
    bn_momentum: float | None = None,
    metadata_features: int = 0,
    metadata_units: int = TrainParams.metadata_units,
    attention_heads: int = TrainParams.attention_heads,
):
    """Backbone → head → class probabilities.

    Heads: ``dense`` (paper 000: GAP → Dense(dense_units, ReLU) → Dropout → softmax), ``sigmoid``
    (paper 002: the same with one sigmoid unit, binary only) and ``soft_attention`` (paper 004:
    Soft-Attention where the paper inserts it, max-pool/concat/ReLU/Dropout 0.5 → softmax).
    ``dense_units=0`` drops the hidden layer. With ``metadata_features > 0`` a metadata branch
    (Dense(metadata_units, ReLU)) is concatenated with the image features before the classifier.
    ``bn_momentum`` replaces BatchNormalization momentum (Keras' 0.999 lags badly when training from scratch;
    ``None`` keeps it). Defaults are the ``train`` params' (:class:`mobiledx.params.TrainParams`).
    """
    import keras

    if head not in HEADS:
        raise ValueError(f"train.head must be one of {HEADS}, got {head!r}")
    if head == "sigmoid" and num_classes != 2:
        raise ValueError(f"the sigmoid head is binary; this dataset has {num_classes} classes")
    spec = backbone_spec(backbone)
    base = build_backbone(spec.name, image_size, alpha=alpha, weights=weights)
    tap = attention_features(base, spec.name) if head == "soft_attention" else base.output
    trunk = keras.Model(base.input, tap, name="backbone")
    if bn_momentum is not None:
        for layer in trunk.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = bn_momentum

    image = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = image
    for layer in preprocessing_layers(spec.preprocessing):
        x = layer(x)
    features = trunk(x)
    if head == "soft_attention":
        from mobiledx.models.attention import soft_attention_block

        if len(features.shape) != 4:
            raise ValueError(f"Soft-Attention needs a feature map; {spec.name} gives {features.shape}")
        x = soft_attention_block(features, heads=attention_heads, dropout=0.5)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(features) if len(features.shape) == 4 else features
    inputs = [image]
    if metadata_features > 0:
        metadata = keras.Input(shape=(metadata_features,), name="metadata")
        inputs.append(metadata)
        branch = keras.layers.Dense(metadata_units, activation="relu", name="metadata_dense")(metadata)
        x = keras.layers.Concatenate(name="image_and_metadata")([x, branch])
    if dense_units > 0:
        x = keras.layers.Dense(dense_units, activation="relu", name="dense")(x)
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    if head == "sigmoid":
        from mobiledx.models.layers import LogitPair

        positive = keras.layers.Dense(1, name="positive_logit")(x)
        outputs = keras.layers.Activation("softmax", name="probabilities")(LogitPair(name="logit_pair")(positive))
    else:
        outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs if len(inputs) > 1 else image, outputs, name=f"{spec.name}_{head}_classifier")


def backbone_layer(model):
    """The backbone sub-model of a ``build_classifier`` model (for freezing and fine-tuning)."""
    return model.get_layer("backbone")

"""Soft-Attention (seed paper 004) as the paper describes it, written with a 3×3 ``Conv2D``.

The widely copied public implementation uses a ``Conv3D`` whose kernel runs over image rows and only
3 of the C channels: it is not the paper's algorithm, TensorFlow and TFLite pick *different* channels
(max |Δ| 0.24 on a toy layer) and LiteRT never quantizes Conv3D. The ``Conv2D`` form below spans all C
channels, uses ``keras.ops`` only (backend-agnostic) and exports to TFLite with builtin ops, int8 included.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mobiledx")
class SoftAttention(keras.layers.Layer):
    """Soft-Attention over a feature map ``t`` of shape (B, H, W, C).

    ``Conv2D(heads, 3×3, same, ReLU)`` → per head a softmax over the H·W positions → sum of the heads
    = α (B, H, W, 1) → ``γ · (α ⊙ t)``, γ a trainable scalar initialised to 1.0. With
    ``concatenate=True`` the output is ``concat([γ·α⊙t, t])`` on channels (2C). Each image's α sums to
    ``heads`` over its positions. Call with ``return_attention=True`` to get ``(output, α)``, e.g. to
    visualise the maps.
    """

    def __init__(self, heads: int = 16, kernel_size: int = 3, concatenate: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.heads = int(heads)
        self.kernel_size = int(kernel_size)
        self.concatenate = bool(concatenate)
        self.conv = keras.layers.Conv2D(
            self.heads, self.kernel_size, padding="same", activation="relu", name="attention_conv"
        )

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.gamma = self.add_weight(name="gamma", shape=(), initializer=keras.initializers.Constant(1.0))
        super().build(input_shape)

    def attention_maps(self, inputs):
        """α of shape (B, H, W, 1): the sum over heads of each head's softmax over positions."""
        logits = self.conv(inputs)  # (B, H, W, heads), ReLU applied
        height, width = inputs.shape[1], inputs.shape[2]
        # Softmax over the H·W positions: positions moved to the last axis, where TFLite's SOFTMAX works
        # (the int8 export keeps it in float; see mobiledx.tflite.quantization.FLOAT_OPS).
        positions = ops.transpose(ops.reshape(logits, (-1, height * width, self.heads)), (0, 2, 1))
        maps = ops.transpose(ops.softmax(positions, axis=-1), (0, 2, 1))
        return ops.reshape(ops.sum(maps, axis=-1), (-1, height, width, 1))

    def call(self, inputs, return_attention=False):
        alpha = self.attention_maps(inputs)
        outputs = ops.cast(self.gamma, inputs.dtype) * (alpha * inputs)
        if self.concatenate:
            outputs = ops.concatenate([outputs, inputs], axis=-1)
        return (outputs, alpha) if return_attention else outputs

    def get_config(self):
        config = super().get_config()
        config.update(heads=self.heads, kernel_size=self.kernel_size, concatenate=self.concatenate)
        return config


def soft_attention_block(features, heads: int = 16, dropout: float = 0.5, name: str = "soft_attention"):
    """The seed's head after the attention (functional API): returns a flat tensor.

    ``SoftAttention(features)`` and ``features`` each go through 2×2 max-pooling (padding same, as in the
    seed code), are concatenated on channels, then ReLU → Dropout(``dropout``) → Flatten.
    """
    layers = keras.layers
    attended = SoftAttention(heads=heads, name=name)(features)
    attended = layers.MaxPooling2D(2, padding="same", name=f"{name}_pool")(attended)
    pooled = layers.MaxPooling2D(2, padding="same", name=f"{name}_features_pool")(features)
    x = layers.Concatenate(name=f"{name}_concat")([pooled, attended])
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.Flatten(name=f"{name}_flatten")(x)

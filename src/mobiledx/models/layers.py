"""Small serialisable layers used by the model factory (safe to load with ``safe_mode=True``)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="mobiledx")
class ChannelReverse(keras.layers.Layer):
    """RGB → BGR (reverse the last axis), as Caffe-style ImageNet backbones expect.

    Written as a 1×1 convolution with a fixed permutation kernel rather than a flip: LiteRT's CPU
    accelerator (XNNPACK) has no REVERSE_V2, so a flip left every exported variant partly on slow
    reference kernels. Products with 0 and 1 are exact, so the pixels are unchanged.
    """

    def call(self, inputs):
        channels = inputs.shape[-1]
        permutation = keras.ops.flip(keras.ops.eye(channels, dtype=inputs.dtype), axis=0)
        return keras.ops.conv(inputs, keras.ops.reshape(permutation, (1, 1, channels, channels)))


@keras.saving.register_keras_serializable(package="mobiledx")
class LogitPair(keras.layers.Layer):
    """One logit z of the positive class as the pair ``[-z/2, z/2]``, whose softmax is ``[1 - sigmoid(z),
    sigmoid(z)]``: a binary sigmoid unit with the multi-class interface. Through softmax, Keras' cross-entropy
    sees the logits (stable, no vanishing gradient when sigmoid saturates, as ``1 - p`` on probabilities has)."""

    def call(self, logit):
        return keras.ops.concatenate([-0.5 * logit, 0.5 * logit], axis=-1)

"""Small serialisable layers used by the model factory (safe to load with ``safe_mode=True``)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="mobiledx")
class ChannelReverse(keras.layers.Layer):
    """RGB → BGR (reverse the last axis), as Caffe-style ImageNet backbones expect."""

    def call(self, inputs):
        return keras.ops.flip(inputs, axis=-1)


@keras.saving.register_keras_serializable(package="mobiledx")
class LogitPair(keras.layers.Layer):
    """One logit z of the positive class as the pair ``[-z/2, z/2]``, whose softmax is ``[1 - sigmoid(z),
    sigmoid(z)]``: a binary sigmoid unit with the multi-class interface. Through softmax, Keras' cross-entropy
    sees the logits (stable, no vanishing gradient when sigmoid saturates, as ``1 - p`` on probabilities has)."""

    def call(self, logit):
        return keras.ops.concatenate([-0.5 * logit, 0.5 * logit], axis=-1)

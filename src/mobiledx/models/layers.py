"""Small serialisable layers used by the model factory (safe to load with ``safe_mode=True``)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="mobiledx")
class ChannelReverse(keras.layers.Layer):
    """RGB → BGR (reverse the last axis), as Caffe-style ImageNet backbones expect."""

    def call(self, inputs):
        return keras.ops.flip(inputs, axis=-1)


@keras.saving.register_keras_serializable(package="mobiledx")
class SigmoidPair(keras.layers.Layer):
    """Turns one sigmoid probability p into ``[1 - p, p]`` so binary models share the multi-class
    interface (categorical cross-entropy on the pair equals binary cross-entropy on p)."""

    def call(self, probability):
        return keras.ops.concatenate([1.0 - probability, probability], axis=-1)

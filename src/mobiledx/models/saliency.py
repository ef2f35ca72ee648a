"""Where a model looked: Grad-CAM on the backbone's last feature map, and Soft-Attention's learned map.

Grad-CAM (Selvaraju et al. 2017): the gradient of one class's *logit* with respect to the backbone's last
feature map A (B, h, w, C), averaged over positions, weights A's channels; ReLU of the weighted sum is where
evidence for that class sits (h × w: 7 × 7 for MobileNetV2 at 224 px, 3 × 3 at 96 px), resized to the
image. The logit, not the probability: a confident softmax is flat (p ≈ 1), its gradient vanishes, and a
temperature (see :mod:`mobiledx.evaluation.calibration`) scales every logit alike, so the normalised map is the same
for the calibrated model that ships. Backbones whose features are flat at the end (paper 003's CNN) use
their last convolution; one without any (paper 003's MLP) gets gradient × input on the pixels instead,
the only spatial signal it has (:attr:`Explainer.method` says which).

``soft_attention`` models (paper 004) also return their attention map α (sum over heads of a softmax
over positions, :class:`mobiledx.models.attention.SoftAttention`): what the model weights, whatever the
class. Maps are in [0, 1] per image (0 everywhere when there is no positive evidence).
"""

from __future__ import annotations

import numpy as np

GRAD_CAM = "grad_cam"
INPUT_GRADIENT = "input_gradient"  # for a backbone without a spatial feature map
ATTENTION = "attention"
# Images per gradient pass: the tape keeps every activation of the batch (MobileNetV2 at 224 px, alpha 1.0:
# 3.5 GiB peak at 32 images), and a gallery is a few dozen images, so small batches cost little time.
EXPLAIN_BATCH = 8
MAP_TITLES = {GRAD_CAM: "Grad-CAM", INPUT_GRADIENT: "gradient x input", ATTENTION: "attention"}


class Explainer:
    """Saliency maps of a :func:`mobiledx.models.build_classifier` model (loaded or freshly built).

    The classifier is cut where it calls its ``backbone`` sub-model, into image → backbone input,
    backbone → (last feature map, backbone output), and backbone output (+ metadata) → the last layer's
    input, whose logits are then computed from the ``probabilities`` layer's own weights."""

    def __init__(self, model) -> None:
        import keras

        trunk = model.get_layer("backbone")
        call = trunk._inbound_nodes[-1]  # the classifier's call of the backbone (Keras has no public handle)
        self._to_trunk = keras.Model(model.inputs[0], call.input_tensors[0])
        feature_map = _last_feature_map(trunk)
        self.method = GRAD_CAM if feature_map is not None else INPUT_GRADIENT
        self._trunk = keras.Model(trunk.inputs, [trunk.inputs[0] if feature_map is None else feature_map,
                                                 trunk.outputs[0]])
        output_layer = model.get_layer("probabilities")
        self._output_layer = output_layer if isinstance(output_layer, keras.layers.Dense) else None
        # None: the last layer reads the backbone's output directly (a flat backbone, no hidden layer)
        self._to_logits = None if output_layer.input is call.output_tensors[0] else keras.Model(
            [call.output_tensors[0], *model.inputs[1:]], output_layer.input)
        self._attention = _attention_layer(model)
        self.has_metadata = len(model.inputs) > 1

    @property
    def map_names(self) -> tuple[str, ...]:
        """The maps :meth:`explain` returns, in display order."""
        return (self.method, ATTENTION) if self._attention is not None else (self.method,)

    def explain(self, images: np.ndarray, class_indices: np.ndarray, metadata: np.ndarray | None = None,
                batch_size: int = EXPLAIN_BATCH) -> dict[str, np.ndarray]:
        """Maps for ``images`` (N, H, W, 3) pixels in [0, 255], each for its class in ``class_indices`` (N,):
        ``{name: (N, H, W) float32 in [0, 1]}`` for each of :attr:`map_names`. Memory is bounded by
        ``batch_size``."""
        images = np.asarray(images)
        class_indices = np.asarray(class_indices, dtype=np.int64)
        if len(images) != len(class_indices):
            raise ValueError(f"{len(images)} images but {len(class_indices)} class indices")
        if self.has_metadata and metadata is None:
            raise ValueError("this model has a metadata input: pass the encoded metadata rows")
        maps: dict[str, list[np.ndarray]] = {name: [] for name in self.map_names}
        for start in range(0, len(images), batch_size):
            part = slice(start, start + batch_size)
            batch = self._batch(images[part], class_indices[part],
                                None if metadata is None else np.asarray(metadata[part], np.float32))
            for name, values in batch.items():
                maps[name].append(values)
        size = images.shape[1:3]
        return {name: np.concatenate(parts) if parts else np.zeros((0, *size), np.float32)
                for name, parts in maps.items()}

    def _batch(self, images: np.ndarray, classes: np.ndarray, metadata: np.ndarray | None) -> dict[str, np.ndarray]:
        import tensorflow as tf

        pixels = tf.convert_to_tensor(images, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(pixels)
            features, trunk_output = self._trunk(self._to_trunk(pixels))
            if self._to_logits is None:
                head_input = trunk_output
            else:
                head_input = self._to_logits([trunk_output] if metadata is None
                                             else [trunk_output, tf.convert_to_tensor(metadata, tf.float32)])
            logits = head_input if self._output_layer is None else (
                tf.matmul(head_input, self._output_layer.kernel) + self._output_layer.bias)
            chosen = tf.gather(logits, classes, axis=1, batch_dims=1)  # (B,) each image's own class
        if self.method == GRAD_CAM:
            gradients = tape.gradient(chosen, features)  # (B, h, w, C)
            weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)  # (B, 1, 1, C)
            raw = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))  # (B, h, w)
        else:
            gradients = tape.gradient(chosen, pixels)  # (B, H, W, 3)
            raw = tf.nn.relu(tf.reduce_sum(gradients * pixels, axis=-1))
        result = {self.method: _to_image_size(raw.numpy(), images.shape[1:3])}
        if self._attention is not None:
            alpha = self._attention.attention_maps(trunk_output)[..., 0]  # (B, h, w)
            result[ATTENTION] = _to_image_size(np.asarray(alpha), images.shape[1:3])
        return result


def _last_feature_map(trunk):
    """The backbone's last spatial feature map: its output when that is (B, h, w, C), else the output of
    its last convolution (paper 003's CNN flattens after pooling); None when it has neither."""
    import keras

    if len(trunk.outputs[0].shape) == 4:
        return trunk.outputs[0]
    convolutions = [layer for layer in trunk.layers if isinstance(layer, keras.layers.Conv2D)]
    return convolutions[-1].output if convolutions else None


def _attention_layer(model):
    from mobiledx.models.attention import SoftAttention

    layers = [layer for layer in model.layers if isinstance(layer, SoftAttention)]
    return layers[0] if layers else None


def _to_image_size(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(B, h, w) maps resized (bilinear, pixel centres aligned) to ``size`` and scaled to [0, 1] per image."""
    import tensorflow as tf

    resized = tf.image.resize(maps[..., None].astype(np.float32), size, method="bilinear").numpy()[..., 0]
    peaks = resized.reshape(len(resized), -1).max(axis=1) if len(resized) else np.zeros(0)
    scale = np.where(peaks > 0, peaks, 1.0)[:, None, None]
    return np.clip(resized / scale, 0.0, 1.0).astype(np.float32)


def overlay(image: np.ndarray, heat: np.ndarray, strength: float = 0.55) -> np.ndarray:
    """``image`` (H, W, 3) in [0, 255] with ``heat`` (H, W) in [0, 1] blended over it (jet colours, more
    opaque where hotter, so cold regions show the image): uint8 (H, W, 3)."""
    from matplotlib import colormaps

    colours = colormaps["jet"](heat)[..., :3] * 255.0
    weight = strength * heat[..., None]
    return np.clip((1.0 - weight) * np.asarray(image, np.float32) + weight * colours, 0, 255).astype(np.uint8)

"""Online augmentation presets as Keras preprocessing layers, applied inside the ``tf.data`` pipeline.

Each paper's recipe is a named preset (``train.augmentation``), so a study can switch it with
``dvc exp run -S train.augmentation=paper000``. Layers run on float32 pixels in [0, 255].

The geometric presets use one :class:`RandomAffine` layer: it samples rotation, zoom, shifts, shear
and flips per image, composes them into ONE matrix and resamples each batch with a single
``ImageProjectiveTransformV3`` call — the way Keras' ``ImageDataGenerator`` applies one combined
affine per image. (A chain of Keras ``RandomRotation``/``RandomZoom``/``RandomTranslation``/
``RandomShear`` layers resamples, and blurs, the batch once per layer: ~20 ms per layer per batch of
32 at 96 px.) The layer lives only in ``tf.data`` (and offline augmentation), never in an exported
model, so it has no serialisation config.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import ops

from mobiledx.params import AUGMENTATION_PRESETS as PRESETS


def affine_transforms(theta, shift_x, shift_y, shear, zoom_x, zoom_y, flip_horizontal, flip_vertical,
                      height, width):
    """Per-image ``ImageProjectiveTransformV3`` vectors ``[a0, a1, a2, b0, b1, b2, 0, 0]`` (shape ``(n, 8)``).

    Each vector maps an OUTPUT pixel ``(x, y)`` (column, row; pixel centres at integers) to the INPUT
    point it samples: ``x_in = a0 x + a1 y + a2``, ``y_in = b0 x + b1 y + b2``. Parameters are
    length-``n`` vectors, with ImageDataGenerator's meanings and composition order (about the image
    centre ``((width - 1) / 2, (height - 1) / 2)``, inverse map ``R · T · S · Z · F``):

    - ``theta``: rotation in degrees, positive = counter-clockwise on screen (``np.rot90`` for +90);
    - ``shift_x``, ``shift_y``: translation in pixels, positive = content moves right / down
      (applied in the rotated frame, as ImageDataGenerator does);
    - ``shear``: shear angle in DEGREES (ImageDataGenerator's ``shear_range`` unit), ``x_in = x - sin(s) y``,
      ``y_in = cos(s) y``;
    - ``zoom_x``, ``zoom_y``: scale of the sampling grid, > 1 zooms OUT (content looks smaller);
    - ``flip_horizontal``, ``flip_vertical``: booleans, applied last to the output image.

    Works on NumPy arrays or tensors (``keras.ops``), eagerly or inside a ``tf.data`` graph.
    """
    f32 = "float32"
    theta = ops.cast(theta, f32) * (math.pi / 180.0)
    shear = ops.cast(shear, f32) * (math.pi / 180.0)
    zoom_x, zoom_y = ops.cast(zoom_x, f32), ops.cast(zoom_y, f32)
    flip_x = 1.0 - 2.0 * ops.cast(flip_horizontal, f32)  # -1 where flipped
    flip_y = 1.0 - 2.0 * ops.cast(flip_vertical, f32)
    cos, sin = ops.cos(theta), ops.sin(theta)
    # A = S · Z · F, then L = R · A.
    a00, a01 = zoom_x * flip_x, -ops.sin(shear) * zoom_y * flip_y
    a11 = ops.cos(shear) * zoom_y * flip_y
    l00, l01 = cos * a00, cos * a01 - sin * a11
    l10, l11 = sin * a00, sin * a01 + cos * a11
    # Translation of the inverse map (content moving +s means sampling at -s), rotated by R.
    tx, ty = -ops.cast(shift_x, f32), -ops.cast(shift_y, f32)
    t0, t1 = cos * tx - sin * ty, sin * tx + cos * ty
    cx = (ops.cast(width, f32) - 1.0) / 2.0
    cy = (ops.cast(height, f32) - 1.0) / 2.0
    # input = L (out - c) + t + c
    b0 = cx - l00 * cx - l01 * cy + t0
    b1 = cy - l10 * cx - l11 * cy + t1
    zeros = ops.zeros_like(l00)
    return ops.stack([l00, l01, b0, l10, l11, b1, zeros, zeros], axis=-1)


class RandomAffine(keras.layers.Layer):
    """Random rotation, zoom, shift, shear and flips composed into one affine resample per image.

    Arguments follow ``ImageDataGenerator``: ``rotation_range`` and ``shear_range`` in degrees
    (uniform in ``±range``); ``zoom_range`` a float ``z`` (``[1 - z, 1 + z]``) or a ``(low, high)``
    pair, with ``zoom_x`` and ``zoom_y`` drawn independently unless ``same_zoom`` (then the aspect
    ratio is kept, like ``keras.layers.RandomZoom`` with ``width_factor=None``);
    ``width_shift_range``/``height_shift_range`` fractions of the width/height (uniform in
    ``±range``); ``horizontal_flip``/``vertical_flip`` each with p = 0.5. See
    :func:`affine_transforms` for the exact conventions. (On non-square images ImageDataGenerator
    scales its horizontal shift by the height, and vice versa, and rotates about a transposed
    centre; here each shift follows its own side and the centre is the true one. Square images,
    as in every preset, are unaffected.) Seeded by a ``keras.random.SeedGenerator``,
    so the same ``seed`` gives the same sequence of augmented batches. Input: a float batch
    ``(batch, height, width, channels)`` (batch size may be unknown); output float32, same shape.
    """

    def __init__(self, rotation_range=0.0, zoom_range=0.0, width_shift_range=0.0,
                 height_shift_range=0.0, shear_range=0.0, horizontal_flip=False, vertical_flip=False,
                 same_zoom=False, fill_mode="nearest", interpolation="bilinear", fill_value=0.0,
                 seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if isinstance(zoom_range, (int, float)):
            zoom_range = (1.0 - zoom_range, 1.0 + zoom_range)
        self.zoom_range = (float(zoom_range[0]), float(zoom_range[1]))
        if not 0 < self.zoom_range[0] <= self.zoom_range[1]:
            raise ValueError(f"zoom_range must give 0 < low <= high, got {self.zoom_range}")
        for name, value in (("width_shift_range", width_shift_range),
                            ("height_shift_range", height_shift_range)):
            if not 0 <= value < 1:
                raise ValueError(f"{name} is a fraction of the image side in [0, 1), got {value}")
        self.rotation_range = float(rotation_range)
        self.width_shift_range = float(width_shift_range)
        self.height_shift_range = float(height_shift_range)
        self.shear_range = float(shear_range)
        self.horizontal_flip = bool(horizontal_flip)
        self.vertical_flip = bool(vertical_flip)
        self.same_zoom = bool(same_zoom)
        self.fill_mode = fill_mode
        self.interpolation = interpolation
        self.fill_value = float(fill_value)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def sample_parameters(self, batch_size, height, width):
        """One draw of per-image parameters (dict of length-``batch_size`` vectors) from the ranges."""
        # A single uniform draw of (batch, 8) feeds every parameter: one RNG op per batch.
        u = keras.random.uniform((batch_size, 8), 0.0, 1.0, seed=self.generator)

        def spread(column, low, high):
            return low + (high - low) * u[:, column]

        zoom_low, zoom_high = self.zoom_range
        zoom_x = spread(3, zoom_low, zoom_high)
        width_shift, height_shift = self.width_shift_range, self.height_shift_range
        return {
            "theta": spread(0, -self.rotation_range, self.rotation_range),
            "shift_x": spread(1, -width_shift, width_shift) * ops.cast(width, "float32"),
            "shift_y": spread(2, -height_shift, height_shift) * ops.cast(height, "float32"),
            "zoom_x": zoom_x,
            "zoom_y": zoom_x if self.same_zoom else spread(4, zoom_low, zoom_high),
            "shear": spread(5, -self.shear_range, self.shear_range),
            # p = 0.5 each; a threshold of 0 never flips.
            "flip_horizontal": u[:, 6] < (0.5 if self.horizontal_flip else 0.0),
            "flip_vertical": u[:, 7] < (0.5 if self.vertical_flip else 0.0),
        }

    def call(self, images, training=True):
        images = ops.cast(images, self.compute_dtype)
        if not training:
            return images
        shape = ops.shape(images)
        batch_size, height, width = shape[0], shape[1], shape[2]
        transforms = affine_transforms(**self.sample_parameters(batch_size, height, width),
                                       height=height, width=width)
        return ops.image.affine_transform(images, transforms, interpolation=self.interpolation,
                                          fill_mode=self.fill_mode, fill_value=self.fill_value)

    def compute_output_shape(self, input_shape):
        return input_shape


class CentralCropZoom(keras.layers.Layer):
    """Paper 002: with probability ``probability`` crop the centre to a random fraction of the image
    (``min_fraction``..1) and resize back, i.e. a zoom-in about the centre. Seeded like :class:`RandomAffine`."""

    def __init__(self, probability: float, min_fraction: float, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.probability = probability
        self.min_fraction = min_fraction
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        batch = tf.shape(images)[0]
        size = tf.shape(images)[1:3]
        fraction = keras.random.uniform((batch,), self.min_fraction, 1.0, seed=self.generator)
        apply = keras.random.uniform((batch,), 0.0, 1.0, seed=self.generator) < self.probability
        fraction = tf.where(apply, fraction, tf.ones_like(fraction))
        margin = (1.0 - fraction) / 2.0
        boxes = tf.stack([margin, margin, 1.0 - margin, 1.0 - margin], axis=1)
        cropped = tf.image.crop_and_resize(images, boxes, tf.range(batch), size)
        return tf.ensure_shape(cropped, images.shape)  # keep the static (None, H, W, C) shape


def augmentation_layers(preset: str, seed: int):
    """The Keras ``Sequential`` of random layers for ``preset``; ``None`` for ``"none"``.

    - ``mobiledx``: both flips, rotation ±36°, zoom 0.1 (aspect kept), shifts 0.1, reflected borders.
    - ``paper000`` (MobileNetV2 HAM10000, ImageDataGenerator): rotation 40°, zoom 0.2, shifts 0.2,
      shear 0.2°, horizontal flip, nearest fill.
    - ``paper004`` (Soft-Attention, ImageDataGenerator): rotation 180°, shifts 0.1, zoom 0.1, both
      flips, nearest fill.
    - ``paper002`` (C-NMC): central crop zoom with p = 0.7 (crop to 60-100 % of the side).

    The geometric presets are one :class:`RandomAffine` (one resample per image, as in
    ImageDataGenerator); ``paper000``/``paper004`` draw ``zoom_x`` and ``zoom_y`` independently, as
    ImageDataGenerator's ``zoom_range`` does.
    """
    if preset not in PRESETS:
        raise ValueError(f"train.augmentation must be one of {PRESETS}, got {preset!r}")
    if preset == "none":
        return None
    if preset == "mobiledx":
        layer = RandomAffine(
            rotation_range=36, zoom_range=0.1, same_zoom=True, width_shift_range=0.1,
            height_shift_range=0.1, horizontal_flip=True, vertical_flip=True, fill_mode="reflect",
            seed=seed, name="random_affine",
        )
    elif preset == "paper000":
        # The paper's ImageDataGenerator(shear_range=0.2): that argument is an angle in DEGREES, so
        # the recipe shears by at most 0.2° (negligible) — reproduced as written, not as a 0.2 factor.
        layer = RandomAffine(
            rotation_range=40, zoom_range=0.2, width_shift_range=0.2, height_shift_range=0.2,
            shear_range=0.2, horizontal_flip=True, fill_mode="nearest", seed=seed, name="random_affine",
        )
    elif preset == "paper004":
        layer = RandomAffine(
            rotation_range=180, zoom_range=0.1, width_shift_range=0.1, height_shift_range=0.1,
            horizontal_flip=True, vertical_flip=True, fill_mode="nearest", seed=seed, name="random_affine",
        )
    else:
        layer = CentralCropZoom(probability=0.7, min_fraction=0.6, seed=seed, name="central_crop_zoom")
    return keras.Sequential([layer], name=f"augmentation_{preset}")

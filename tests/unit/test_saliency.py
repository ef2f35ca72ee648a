"""Saliency maps: Grad-CAM finds the evidence a trained model uses; Soft-Attention maps; every head and
backbone kind; the overlay."""

from __future__ import annotations

import numpy as np
import pytest

from mobiledx.models import build_classifier
from mobiledx.models.saliency import ATTENTION, GRAD_CAM, INPUT_GRADIENT, Explainer, overlay

SIZE = 64
PATCH = 16
COLOURS = np.array([[30, 60, 230], [230, 40, 30]], np.float32)  # class 0: a blue patch, class 1: a red one


def patch_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grey noise with one coloured square at a random place; the square's colour is the class.
    Returns images (N, 64, 64, 3) in [0, 255], labels (N,), each square's top-left corner (N, 2)."""
    rng = np.random.default_rng(seed)
    images = np.repeat(rng.uniform(60, 190, (count, SIZE, SIZE, 1)), 3, axis=-1).astype(np.float32)
    labels = rng.integers(0, 2, count)
    corners = rng.integers(0, SIZE - PATCH + 1, (count, 2))
    for image, label, (top, left) in zip(images, labels, corners):
        image[top:top + PATCH, left:left + PATCH] = COLOURS[label]
    return images, labels, corners


def test_grad_cam_peaks_on_the_patch_that_decides_the_class():
    """A model trained on "the square's colour is the class" must look at the square: the Grad-CAM peak of
    held-out images falls inside it (widened by the map's half-cell, 8 px) far above chance (14 %)."""
    import keras

    keras.utils.set_random_seed(0)
    model = build_classifier(2, SIZE, backbone="cnn15", dense_units=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-4), loss="sparse_categorical_crossentropy")
    images, labels, _ = patch_images(512, seed=1)
    model.fit(images, labels, epochs=5, batch_size=32, verbose=0)
    held_out, held_out_labels, corners = patch_images(64, seed=2)
    predicted = model.predict(held_out, verbose=0).argmax(axis=1)
    assert np.mean(predicted == held_out_labels) >= 0.95  # it learned the rule

    explainer = Explainer(model)
    assert explainer.method == GRAD_CAM
    maps = explainer.explain(held_out, predicted)[GRAD_CAM]
    peaks = np.array(np.unravel_index(maps.reshape(len(maps), -1).argmax(axis=1), (SIZE, SIZE))).T
    margin = 8
    inside = np.all((peaks >= corners - margin) & (peaks < corners + PATCH + margin), axis=1)
    chance = ((PATCH + 2 * margin) / SIZE) ** 2
    assert inside.mean() >= 0.8, f"peak inside the square for {inside.mean():.2f} of images (chance {chance:.2f})"


@pytest.mark.parametrize(("backbone", "head", "size", "method"), [
    ("mobilenetv2", "dense", 96, GRAD_CAM),
    ("mobilenetv2", "sigmoid", 96, GRAD_CAM),
    ("mobilenetv3small", "dense", 96, GRAD_CAM),
    ("cnn15", "dense", 64, GRAD_CAM),
    ("mlp", "dense", 32, INPUT_GRADIENT),  # no spatial feature map at all
])
def test_every_backbone_gets_maps_in_zero_one_at_image_size(backbone, head, size, method):
    model = build_classifier(2, size, backbone=backbone, alpha=0.35, head=head, dense_units=8)
    explainer = Explainer(model)
    images = np.random.default_rng(0).uniform(0, 255, (3, size, size, 3)).astype(np.float32)
    maps = explainer.explain(images, np.array([0, 1, 1]), batch_size=2)
    assert explainer.map_names == (method,) and set(maps) == {method}
    assert maps[method].shape == (3, size, size) and maps[method].dtype == np.float32
    assert maps[method].min() >= 0 and maps[method].max() <= 1
    assert all(m.max() in (0.0, 1.0) for m in maps[method])  # each map scaled to its own peak


def test_soft_attention_models_also_return_their_attention_map():
    model = build_classifier(3, 96, alpha=0.35, head="soft_attention", dense_units=0, attention_heads=4)
    explainer = Explainer(model)
    images = np.random.default_rng(1).uniform(0, 255, (2, 96, 96, 3)).astype(np.float32)
    maps = explainer.explain(images, np.array([2, 0]))
    assert explainer.map_names == (GRAD_CAM, ATTENTION)
    layer = model.get_layer("soft_attention")
    trunk = model.get_layer("backbone")
    features = trunk(model.layers[1](images))  # the preprocessing layer, then the backbone
    alpha = np.asarray(layer.attention_maps(features))[..., 0]
    assert np.allclose(alpha.reshape(2, -1).sum(axis=1), 4, atol=1e-3)  # one softmax per head
    expected = np.asarray(__import__("tensorflow").image.resize(alpha[..., None], (96, 96)))[..., 0]
    assert np.allclose(maps[ATTENTION], expected / expected.reshape(2, -1).max(axis=1)[:, None, None], atol=1e-5)


def test_metadata_models_need_their_metadata_rows():
    model = build_classifier(2, 96, alpha=0.35, dense_units=8, metadata_features=5)
    explainer = Explainer(model)
    images = np.zeros((2, 96, 96, 3), np.float32)
    with pytest.raises(ValueError, match="metadata input"):
        explainer.explain(images, np.array([0, 1]))
    maps = explainer.explain(images + 100, np.array([0, 1]), metadata=np.ones((2, 5), np.float32))
    assert maps[GRAD_CAM].shape == (2, 96, 96)


def test_overlay_keeps_cold_pixels_and_colours_hot_ones():
    image = np.full((4, 4, 3), 128, np.uint8)
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0], heat[0, 1] = 1.0, 0.5
    blended = overlay(image, heat)
    assert blended.dtype == np.uint8 and blended.shape == (4, 4, 3)
    assert np.array_equal(blended[1:], image[1:]) and np.array_equal(blended[0, 2:], image[0, 2:])
    assert blended[0, 0, 1] < 64 and blended[0, 0, 2] < 64  # jet at 1.0 is dark red: green and blue drop
    assert blended[0, 1, 1] > 150  # jet at 0.5 is green

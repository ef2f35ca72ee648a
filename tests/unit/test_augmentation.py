"""RandomAffine: one combined affine resample per image, matching ImageDataGenerator's conventions."""

import numpy as np
import pytest

from mobiledx.models.augmentation import PRESETS, RandomAffine, affine_transforms, augmentation_layers

IDENTITY = dict(theta=0.0, shift_x=0.0, shift_y=0.0, shear=0.0, zoom_x=1.0, zoom_y=1.0,
                flip_horizontal=False, flip_vertical=False)


def transform(images, interpolation="bilinear", fill_mode="nearest", **parameters):
    """Apply one explicit set of parameters (broadcast over the batch) with the layer's resampler."""
    import keras

    images = np.asarray(images, np.float32)
    n, height, width = images.shape[:3]
    values = {name: np.full(n, value) for name, value in {**IDENTITY, **parameters}.items()}
    transforms = affine_transforms(**values, height=height, width=width)
    return np.asarray(keras.ops.image.affine_transform(
        images, transforms, interpolation=interpolation, fill_mode=fill_mode))


def smooth_image(size: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A photo-like image: coarse random colours, bilinearly upsampled (so resampling differences are small)."""
    import tensorflow as tf

    coarse = np.random.default_rng(seed).uniform(0, 255, (1, size // 8, size // 8, channels))
    return tf.image.resize(coarse, (size, size), method="bilinear").numpy()[0].astype(np.float32)


def blob_centre(image: np.ndarray) -> np.ndarray:
    mass = image[..., 0]
    rows, cols = np.indices(mass.shape)
    return np.array([(rows * mass).sum(), (cols * mass).sum()]) / mass.sum()


def test_identity_parameters_leave_the_image_unchanged():
    images = np.random.default_rng(0).uniform(0, 255, (4, 24, 20, 3)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(affine_transforms(**{k: np.array([v]) for k, v in IDENTITY.items()}, height=24, width=20)),
        [[1, 0, 0, 0, 1, 0, 0, 0]], atol=1e-6)
    out = np.asarray(RandomAffine(seed=1)(images, training=True))  # every range 0, no flips
    assert out.dtype == np.float32 and out.shape == images.shape
    assert np.abs(out - images).max() <= 1e-4
    assert np.abs(np.asarray(RandomAffine(rotation_range=90, seed=1)(images, training=False)) - images).max() == 0


def test_flips_equal_numpy_flips():
    image = np.random.default_rng(1).uniform(0, 255, (1, 17, 12, 3)).astype(np.float32)  # odd/even sides
    assert np.abs(transform(image, flip_horizontal=True) - np.flip(image, axis=2)).max() <= 1e-4
    assert np.abs(transform(image, flip_vertical=True) - np.flip(image, axis=1)).max() <= 1e-4
    both = transform(image, flip_horizontal=True, flip_vertical=True)
    assert np.abs(both - image[:, ::-1, ::-1]).max() <= 1e-4


def test_positive_rotation_is_counter_clockwise_like_rot90():
    image = np.random.default_rng(2).uniform(0, 255, (1, 16, 16, 3)).astype(np.float32)
    rotated = transform(image, interpolation="nearest", theta=90.0)[0]
    expected = np.rot90(image[0], k=1, axes=(0, 1))  # counter-clockwise as displayed
    assert np.abs(rotated[1:-1, 1:-1] - expected[1:-1, 1:-1]).max() <= 1e-4
    assert np.abs(transform(image, interpolation="nearest", theta=-90.0)[0][1:-1, 1:-1]
                  - np.rot90(image[0], k=-1, axes=(0, 1))[1:-1, 1:-1]).max() <= 1e-4


def test_shift_moves_a_blob_by_the_fraction_of_the_side():
    image = np.zeros((1, 32, 40, 1), np.float32)
    image[0, 12:15, 14:17] = 100.0  # 3×3 blob centred at row 13, col 15
    moved = transform(image, fill_mode="constant", shift_x=0.25 * 40, shift_y=-0.125 * 32)[0]
    np.testing.assert_allclose(blob_centre(moved), [13 - 4, 15 + 10], atol=1e-3)
    assert moved.sum() == pytest.approx(900.0, abs=1e-2)  # moved whole, not resampled away


def test_layer_shift_range_is_a_fraction_of_each_side():
    images = np.zeros((64, 32, 40, 1), np.float32)
    images[:, 14:17, 18:21] = 100.0  # centred at the image centre (15.5, 19.5) ± 0.5
    moved = np.asarray(RandomAffine(width_shift_range=0.2, seed=3)(images, training=True))
    centres = np.array([blob_centre(m) for m in moved])
    np.testing.assert_allclose(centres[:, 0], 15.0, atol=1e-3)  # no vertical motion
    displacement = centres[:, 1] - 19.0
    assert np.abs(displacement).max() <= 0.2 * 40 + 1e-3 and np.abs(displacement).max() > 6.0
    assert (displacement > 1).any() and (displacement < -1).any()


def test_sampled_parameters_cover_their_ranges():
    layer = RandomAffine(rotation_range=40, zoom_range=0.2, width_shift_range=0.2, height_shift_range=0.1,
                         shear_range=0.2, horizontal_flip=True, seed=4)
    n = 20000
    p = {k: np.asarray(v) for k, v in layer.sample_parameters(n, 50, 100).items()}
    for name, bound in (("theta", 40), ("shift_x", 0.2 * 100), ("shift_y", 0.1 * 50), ("shear", 0.2)):
        assert -bound <= p[name].min() < -0.99 * bound and 0.99 * bound < p[name].max() <= bound, name
        assert abs(p[name].mean()) < 0.03 * bound, name
        assert p[name].std() == pytest.approx(bound / np.sqrt(3), rel=0.03), name  # uniform on ±bound
    for name in ("zoom_x", "zoom_y"):
        assert 0.8 <= p[name].min() < 0.81 and 1.19 < p[name].max() <= 1.2
    assert abs(np.corrcoef(p["zoom_x"], p["zoom_y"])[0, 1]) < 0.03  # drawn independently
    assert abs(np.corrcoef(p["theta"], p["shift_x"])[0, 1]) < 0.03
    assert p["flip_horizontal"].mean() == pytest.approx(0.5, abs=0.02) and not p["flip_vertical"].any()

    same = RandomAffine(zoom_range=(0.5, 2.0), same_zoom=True, vertical_flip=True, seed=4)
    q = {k: np.asarray(v) for k, v in same.sample_parameters(n, 8, 8).items()}
    assert np.array_equal(q["zoom_x"], q["zoom_y"]) and 0.5 <= q["zoom_x"].min() and q["zoom_x"].max() <= 2.0
    assert not q["flip_horizontal"].any() and q["flip_vertical"].mean() == pytest.approx(0.5, abs=0.02)
    assert not np.any(q["theta"]) and not np.any(q["shift_x"]) and not np.any(q["shear"])

    # The matrix built from those parameters: det of the linear part = zx·zy·cos(shear)·(±1 per flip).
    t = np.asarray(affine_transforms(**p, height=50, width=100))
    det = t[:, 0] * t[:, 4] - t[:, 1] * t[:, 3]
    sign = np.where(p["flip_horizontal"], -1.0, 1.0)
    np.testing.assert_allclose(det, sign * p["zoom_x"] * p["zoom_y"] * np.cos(np.deg2rad(p["shear"])), rtol=1e-5)
    assert np.all(t[:, 6:] == 0)
    # The image centre maps to the centre shifted back by the rotated shift (flips and zoom keep it fixed).
    cx, cy = 49.5, 24.5
    x_in, y_in = t[:, 0] * cx + t[:, 1] * cy + t[:, 2], t[:, 3] * cx + t[:, 4] * cy + t[:, 5]
    np.testing.assert_allclose(np.hypot(x_in - cx, y_in - cy), np.hypot(p["shift_x"], p["shift_y"]), atol=1e-3)


def test_same_seed_same_batches_different_seed_different():
    images = np.random.default_rng(5).uniform(0, 255, (8, 24, 24, 3)).astype(np.float32)

    def batches(seed):
        layer = augmentation_layers("paper000", seed)
        return [np.asarray(layer(images, training=True)) for _ in range(3)]

    first, again, other = batches(7), batches(7), batches(8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], first[1])  # the generator advances between batches
    assert all(np.abs(a - b).mean() > 1.0 for a, b in zip(first, other))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_runs_in_a_tf_data_map(preset):
    import tensorflow as tf

    images = np.random.default_rng(6).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    layer = augmentation_layers(preset, seed=11)
    if preset == "none":
        assert layer is None
        return
    data = tf.data.Dataset.from_tensor_slices(images).batch(4).map(
        lambda x: layer(tf.cast(x, tf.float32), training=True), num_parallel_calls=2)
    assert data.element_spec.shape.as_list() == [None, 32, 32, 3] and data.element_spec.dtype == tf.float32
    out = np.concatenate([b.numpy() for b in data])
    assert out.shape == (10, 32, 32, 3) and out.dtype == np.float32
    assert out.min() >= -1e-3 and out.max() <= 255 + 1e-3  # bilinear resampling stays in range
    assert np.abs(out - images).mean() > 1.0  # it did augment


def test_presets_use_one_affine_layer_with_the_papers_ranges():
    paper000 = augmentation_layers("paper000", 0).layers
    assert len(paper000) == 1 and isinstance(paper000[0], RandomAffine)
    layer = paper000[0]
    assert (layer.rotation_range, layer.zoom_range, layer.width_shift_range, layer.height_shift_range,
            layer.shear_range, layer.horizontal_flip, layer.vertical_flip, layer.fill_mode, layer.same_zoom) == (
        40.0, (0.8, 1.2), 0.2, 0.2, 0.2, True, False, "nearest", False)
    mobiledx = augmentation_layers("mobiledx", 0).layers[0]
    assert (mobiledx.rotation_range, mobiledx.zoom_range, mobiledx.fill_mode, mobiledx.same_zoom,
            mobiledx.vertical_flip) == (36.0, (0.9, 1.1), "reflect", True, True)
    paper004 = augmentation_layers("paper004", 0).layers[0]
    assert (paper004.rotation_range, paper004.width_shift_range, paper004.zoom_range,
            paper004.horizontal_flip, paper004.vertical_flip, paper004.fill_mode) == (
        180.0, 0.1, (0.9, 1.1), True, True, "nearest")
    with pytest.raises(ValueError, match="must be one of"):
        augmentation_layers("paper999", 0)


def test_matches_image_data_generator_apply_transform():
    """Same explicit parameters through ImageDataGenerator (SciPy, order 1) and RandomAffine's resampler.

    ImageDataGenerator's ``tx`` (drawn from ``height_shift_range`` × rows) moves content LEFT along x
    and ``ty`` moves it UP; for the square images of the presets this is our ``shift_x = -tx``,
    ``shift_y = -ty``. Measured: mean |Δ| ≈ 3e-5 grey levels, max ≈ 2e-4 on a smooth 64 px image; on
    96 px white noise over 20 random paper000 draws mean ≈ 3e-4, max ≈ 5e-3 (float32 vs float64).
    """
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    image = smooth_image(64, seed=9)
    for fill_mode in ("nearest", "reflect"):
        idg = dict(theta=25.0, tx=-7.0, ty=5.0, shear=0.2, zx=1.15, zy=0.85, flip_horizontal=True)
        expected = ImageDataGenerator(fill_mode=fill_mode).apply_transform(image.astype(np.float64), idg)
        ours = transform(image[None], fill_mode=fill_mode, theta=25.0, shift_x=7.0, shift_y=-5.0, shear=0.2,
                         zoom_x=1.15, zoom_y=0.85, flip_horizontal=True)[0]
        difference = np.abs(ours - expected)
        print(f"RandomAffine vs ImageDataGenerator ({fill_mode}): mean |Δ| {difference.mean():.2e}, "
              f"max {difference.max():.2e}")
        assert difference.mean() < 1e-3 and difference.max() < 1e-2, (difference.mean(), difference.max())
    # A large shear and vertical flip too: sign and axis match, not only paper000's tiny 0.2°.
    expected = ImageDataGenerator(fill_mode="nearest").apply_transform(
        image.astype(np.float64), {"shear": 45.0, "flip_vertical": True})
    assert np.abs(transform(image[None], shear=45.0, flip_vertical=True)[0] - expected).max() < 1e-2
    # White noise (worst case for interpolation) under random paper000-range parameters.
    rng = np.random.default_rng(10)
    noise = rng.uniform(0, 255, (48, 48, 3)).astype(np.float32)
    for _ in range(5):
        theta, tx, ty, shear = rng.uniform(-40, 40), *rng.uniform(-9.6, 9.6, 2), rng.uniform(-0.2, 0.2)
        zx, zy, flip = *rng.uniform(0.8, 1.2, 2), bool(rng.random() < 0.5)
        expected = ImageDataGenerator(fill_mode="nearest").apply_transform(noise.astype(np.float64), dict(
            theta=theta, tx=tx, ty=ty, shear=shear, zx=zx, zy=zy, flip_horizontal=flip))
        ours = transform(noise[None], theta=theta, shift_x=-tx, shift_y=-ty, shear=shear, zoom_x=zx, zoom_y=zy,
                         flip_horizontal=flip)[0]
        assert np.abs(ours - expected).max() < 0.05

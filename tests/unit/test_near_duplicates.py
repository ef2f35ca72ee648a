import itertools
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mobiledx.data import near_duplicates
from mobiledx.data.demo import generate_ham10000_demo
from mobiledx.data.images import decode_image
from mobiledx.data.near_duplicates import DEFAULT_MAX_DISTANCE, duplicate_groups, image_hashes, near_duplicate_pairs
from tests.support import REPO_ROOT, altered_copy, emulated_cpus

SIZE = 96  # the demo cache size


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[list[bytes], np.ndarray]:
    """200 demo photos (200x150 JPEGs) and their lesion ids: distinct, except photos of one lesion are alike."""
    raw = tmp_path_factory.mktemp("ham")
    meta = generate_ham10000_demo(raw, 200, seed=11)
    files = [(raw / "HAM10000_images_part_1" / f"{image_id}.jpg").read_bytes() for image_id in meta.image_id]
    return files, meta.lesion_id.to_numpy()


def test_altered_copies_are_found_and_distinct_photos_rarely_paired(photos):
    sources, lesions = photos
    rng = np.random.default_rng(0)
    copied = rng.choice(len(sources), size=len(sources) // 10, replace=False)
    files = sources + [altered_copy(sources[i], rng) for i in copied]
    lesion = np.concatenate([lesions, lesions[copied]])
    pairs = near_duplicate_pairs(image_hashes(np.stack([decode_image(data, SIZE) for data in files])),
                                 DEFAULT_MAX_DISTANCE)

    expected = {(int(i), len(sources) + k) for k, i in enumerate(copied)}
    assert expected <= set(map(tuple, pairs.tolist()))
    false = pairs[lesion[pairs[:, 0]] != lesion[pairs[:, 1]]]
    assert len(np.unique(false)) <= 0.005 * len(files)
    assert len(expected) == 20 and pd.Series(lesions).nunique() > 150  # the check above had something to find


def test_sizes_not_divisible_by_32_hash_alike(photos):
    sources, _ = photos
    at_96 = image_hashes(np.stack([decode_image(data, 96) for data in sources[:20]]))
    at_100 = image_hashes(np.stack([decode_image(data, 100) for data in sources[:20]]))
    distance = np.bitwise_count(at_96 ^ at_100).sum(axis=1)
    assert distance.max() <= DEFAULT_MAX_DISTANCE and distance.mean() < 8


def test_the_same_hashes_in_batches_and_from_a_memory_map(photos, tmp_path):
    images = np.stack([decode_image(data, SIZE) for data in photos[0][:30]])
    np.save(tmp_path / "images.npy", images)
    hashes = image_hashes(images)
    assert hashes.shape == (30, near_duplicates.WORDS) and hashes.dtype == np.uint64
    assert len(np.unique(hashes, axis=0)) == 30
    np.testing.assert_array_equal(image_hashes(np.load(tmp_path / "images.npy", mmap_mode="r"), batch_size=7), hashes)


# Hashes of the patterns in test_hashes_are_fixed_values, by (height, width): one size divisible by 32, one not.
GOLDEN = {(64, 64): [[3083652194317851284, 2251587880663121791, 74731606316679167],
                     [4986378872642270856, 14974345199617015807, 17348155073628209151]],
          (50, 70): [[8454723432337855124, 2242580680334589951, 1829587348619263],
                     [3074456796930963080, 14974345199616999295, 17348155211067162623]]}


@pytest.mark.parametrize("height,width", GOLDEN)
def test_hashes_are_fixed_values(height, width):
    """Pinned: a changed hash definition must be a deliberate change (stored hashes would no longer compare)."""
    k, y, x, c = np.ogrid[:2, :height, :width, :3]
    images = ((x * y * (k + 1) // 37 + 40 * c + 3 * x) % 256).astype(np.uint8)
    assert image_hashes(images).tolist() == GOLDEN[height, width]


def test_flat_images_hash_to_zero():
    """Ties (every coefficient and neighbour equal) are decided the same way: no bit set."""
    flat = np.full((2, 64, 64, 3), (10, 200, 90), dtype=np.uint8)
    assert image_hashes(flat).tolist() == [[0, 0, 0], [0, 0, 0]]


def test_rejects_other_arrays():
    with pytest.raises(ValueError, match="uint8 images"):
        image_hashes(np.zeros((2, 32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8 images"):
        image_hashes(np.zeros((2, 32, 32, 3), dtype=np.float32))


def test_cosine_table_is_the_exact_rounding():
    table = np.array(near_duplicates._COS_2_14)
    exact = 2**14 * np.cos(np.arange(33) * math.pi / 64)
    assert np.abs(table - exact).max() < 0.49  # float cos is ~1e-12 off: the margin makes the rounding certain
    basis = 2**14 * np.cos(math.pi * np.outer(np.arange(8), 2 * np.arange(32) + 1) / 64)
    assert np.abs(near_duplicates._DCT - basis).max() < 0.49


_HASH_IN_CHILD = ("import sys, numpy as np; from mobiledx.data.near_duplicates import image_hashes; "
                  "sys.stdout.buffer.write(b''.join(image_hashes(np.load(p)).tobytes() for p in sys.argv[1:]))")


def test_the_same_bytes_on_emulated_older_cpus(photos, tmp_path):
    arrays = {size: np.stack([decode_image(data, size) for data in photos[0][:40]]) for size in (96, 100)}
    for size, images in arrays.items():
        np.save(tmp_path / f"{size}.npy", images)
    here = b"".join(image_hashes(images).tobytes() for images in arrays.values())
    paths = [str(tmp_path / f"{size}.npy") for size in arrays]
    for name, env in emulated_cpus().items():
        done = subprocess.run([sys.executable, "-c", _HASH_IN_CHILD, *paths], cwd=REPO_ROOT, env={**os.environ, **env},
                              capture_output=True, timeout=120, check=True)
        assert done.stdout == here, name


def naive_pairs(hashes: np.ndarray, max_distance: int) -> list[list[int]]:
    rows = [[int(word) for word in row] for row in hashes.reshape(len(hashes), -1)]
    return [[i, j] for i, j in itertools.combinations(range(len(rows)), 2)
            if sum((a ^ b).bit_count() for a, b in zip(rows[i], rows[j], strict=True)) <= max_distance]


@pytest.mark.parametrize("words", [1, 3])
def test_pairs_agree_with_a_naive_search(words):
    rng = np.random.default_rng(words)
    bases = rng.integers(0, 2**64, (150, words), dtype=np.uint64, endpoint=False)
    hashes = bases[rng.integers(0, len(bases), 600)]  # more than one chunk, many near neighbours
    for _ in range(3):  # flip a few random bits in each
        flip = np.uint64(1) << rng.integers(0, 64, hashes.shape).astype(np.uint64)
        hashes ^= flip * (rng.random(hashes.shape) < 0.6).astype(np.uint64)
    hashes = hashes[:, 0] if words == 1 else hashes
    found = []
    for max_distance in (0, 3, 8, 24):
        pairs = near_duplicate_pairs(hashes, max_distance)
        assert pairs.dtype == np.int64 and pairs.shape[1] == 2
        assert pairs.tolist() == naive_pairs(hashes, max_distance)
        found.append(len(pairs))
    assert found == sorted(found) and 0 < found[1] < found[2] < found[3] and found[3] > 600  # thresholds matter


def test_groups_are_components_named_by_their_smallest_member():
    pairs = np.array([[5, 6], [3, 1], [3, 6], [0, 7]])
    assert duplicate_groups(8, pairs).tolist() == [0, 1, 2, 1, 4, 1, 1, 0]
    assert duplicate_groups(3, np.zeros((0, 2), dtype=np.int64)).tolist() == [0, 1, 2]

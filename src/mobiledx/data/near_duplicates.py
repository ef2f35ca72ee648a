"""Near-duplicate images: perceptual hashes, pairs within a Hamming distance, groups.

Why: one photo can appear in a dataset more than once under different ids, resized, re-encoded, slightly
cropped or colour-corrected. Split by lesion id, such copies land in train and test alike and inflate the
test figures; Abhishek, Jain & Hamarneh found exactly this in DermaMNIST (from HAM10000) and Fitzpatrick17k
(Sci Data 2025, arXiv 2401.14497). Exact duplicates are caught by their bytes; this module finds the near
ones, so that :func:`duplicate_groups` can put them in one split group.

The hash (:func:`image_hashes`), three uint64 words per image, all from the luminance ``299 R + 587 G + 114 B``
area-averaged to a 32 x 32 grid (exact box sums, any image size):

1. DCT hash: the 8 x 8 lowest frequencies of the grid's 2-D DCT-II, less DC (63 bits), each set where it
   exceeds their median (the 32nd of 63); bit 63 is 0.
2. Row-gradient hash: the grid area-averaged to 8 rows x 9 columns, a bit per cell brighter than its left
   neighbour (64 bits).
3. Column-gradient hash: the same down the columns.

Distances are summed over the words (0-191). On the demo's skin photos the DCT hash alone cannot tell
copies from distinct photos: many are alike brown blobs, and finding every uncropped copy (distance 6 of 63)
paired 3 % of the distinct photos with another lesion's; the gradient words separate them.

Same bits on every CPU: data stages must give the same bytes with NumPy's SIMD dispatch off, so nothing here
uses floating point. Sums, box weights and the DCT are integer (the DCT basis comes from the hard-coded
table :data:`_COS_2_14` of ``2**14 cos`` exactly rounded, not from libm), the grid is divided once with
floor division, and bits come from integer comparisons: the median is an element (``np.partition``), ties
give 0. Integer arithmetic without overflow is exact in any order, so any SIMD path gives the same result.

Threshold, measured with ``benchmarks/near_duplicates.py``: two sets of 1,000 demo photos (600 x 450 JPEGs,
seeds 0 and 7), each photo copied with a per-channel gain of 0.93-1.07, brightness ±12, resizing to 40-100 %
and JPEG quality 60-95, some copies also cropped (columns by the largest share cut from one side); cached at
96 and 224 px. Recall is the share of copies within ``max_distance`` of their photo (ranges span the two sets
and sizes); "false" is the share of distinct photos paired with a photo of another lesion (photos of one
lesion are deliberately alike in the demo and not counted).

============  =========  =====================  =====================  =========================
max_distance  uncropped  crop 0-2 % / 2-3 %     crop 3-5 % / 5-10 %    false, seed 0 / seed 7
============  =========  =====================  =====================  =========================
12            1.000      0.99-1.00 / 0.79-0.87  0.44-0.49 / 0.02-0.04  0 / 0
**16**        1.000      1.000 / 0.95-0.99      0.71-0.77 / 0.10-0.13  0-0.002 / 0
18            1.000      1.000 / 0.97-1.00      0.81-0.86 / 0.17-0.20  0.007 / 0.003-0.004
20            1.000      1.000 / 0.97-1.00      0.90-0.95 / 0.25-0.28  0.019-0.023 / 0.009-0.013
============  =========  =====================  =====================  =========================

:data:`DEFAULT_MAX_DISTANCE` = 16 is the largest threshold that keeps the false share at or below 0.5 % on
both sets at both sizes. It finds every uncropped copy and every copy cropped by up to 2 % per side; crops
cost recall fast (with 0-10 % off each side only 10-12 % are found): a crop moves and stretches the whole
frame, and the demo's distinct lesions differ by little more than that. The false share grows with the
number of images (each has more others to be near): measure it on the dataset at hand before raising it.
Speed, 30,000 images at 224 px on 2 cores shared with another job: hashes 2.7-4.8 s, pairs 1.8-3.9 s, in all
about 15 times as long as reading the images from the page cache; inside ingest 6.3-7.5 s of 101-152 s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

GRID = 32  # images are area-averaged to GRID x GRID luminance first
WORDS = 3  # uint64 words per hash: DCT hash, row-gradient hash, column-gradient hash
DEFAULT_MAX_DISTANCE = 16  # see the module docstring
_LOW = 8  # the DCT hash keeps the LOW x LOW lowest frequencies less the DC term: 63 bits
_LUMA = (299, 587, 114)  # Rec. 601 luminance weights, x1000
# round(2**14 cos(k pi / 64)) for k = 0..32, exactly (each value is at least 0.0105 from a .5; checked in the tests)
_COS_2_14 = (16384, 16364, 16305, 16207, 16069, 15893, 15679, 15426, 15137, 14811, 14449, 14053, 13623, 13160,
             12665, 12140, 11585, 11003, 10394, 9760, 9102, 8423, 7723, 7005, 6270, 5520, 4756, 3981, 3196, 2404,
             1606, 804, 0)
_PAIR_VALUES = 1 << 20  # hash words XORed at a time (8 MB): the rows compared per step shrink as N grows


def _dct_matrix() -> np.ndarray:
    """(LOW, GRID) int64: ``2**14 cos(pi (2x + 1) u / (2 GRID))``, the DCT-II basis, from the exact table."""
    angle = (np.arange(_LOW)[:, None] * (2 * np.arange(GRID) + 1)[None, :]) % (4 * GRID)  # in pi / (2 GRID)
    table = np.array(_COS_2_14, dtype=np.int64)
    quarter = angle % GRID
    return np.select([angle < GRID, angle < 2 * GRID, angle < 3 * GRID],
                     [table[quarter], -table[GRID - quarter], -table[quarter]], table[GRID - quarter])


_DCT = _dct_matrix()


def _overlaps(size: int, cells: int) -> np.ndarray:
    """(cells, size) int64: how much of pixel ``i`` lies in cell ``k`` when ``cells`` equal cells span
    ``size`` pixels, in units of 1 / cells of a pixel (so each row sums to ``size``, each column to ``cells``)."""
    pixels = np.arange(size)[None, :] * cells
    starts = np.arange(cells)[:, None] * size
    return np.maximum(np.minimum(pixels + cells, starts + size) - np.maximum(pixels, starts), 0)


_ROWS_8, _COLS_9 = _overlaps(GRID, 8), _overlaps(GRID, 9)


def _luminance(batch: np.ndarray) -> np.ndarray:
    """(n, GRID, GRID) int64: 1000 x the mean luminance of each cell of a GRID x GRID partition, rounded down.

    Sides divisible by GRID sum whole blocks of pixels; other sides weight each pixel by its overlap with each
    cell. Both give the exact area average before the one rounding, so they agree where both apply."""
    n, height, width, _ = batch.shape
    if height % GRID == 0 and width % GRID == 0:
        bh, bw = height // GRID, width // GRID
        rows = batch.reshape(n, GRID, bh, width * 3).sum(axis=2, dtype=np.int32)  # at most 255 bh
        weights = np.tile(np.array(_LUMA, dtype=np.int64), bw)  # for the bw pixels x 3 channels of a block row
        return (rows.reshape(n, GRID, GRID, bw * 3) @ weights) // (bh * bw)
    luminance = sum(weight * batch[..., channel].astype(np.int32) for channel, weight in enumerate(_LUMA))
    return (_overlaps(height, GRID) @ luminance @ _overlaps(width, GRID).T) // (height * width)


def _pack(bits: np.ndarray) -> np.ndarray:
    """(n, b <= 64) booleans -> (n,) uint64, bit ``k`` from column ``k``."""
    return np.bitwise_or.reduce(bits.astype(np.uint64) << np.arange(bits.shape[1], dtype=np.uint64), axis=1)


def _dct_hash(luminance: np.ndarray) -> np.ndarray:
    """The 63 lowest DCT-II frequencies but DC, each set where it exceeds their median (the 32nd of 63)."""
    coefficients = (_DCT @ luminance @ _DCT.T).reshape(len(luminance), _LOW * _LOW)[:, 1:]
    median = np.partition(coefficients, _LOW * _LOW // 2 - 1, axis=1)[:, _LOW * _LOW // 2 - 1]
    return _pack(coefficients > median[:, None])


def _gradient_hash(luminance: np.ndarray) -> np.ndarray:
    """Area averages on 8 rows x 9 columns, each bit set where a cell is brighter than its left neighbour."""
    cells = _ROWS_8 @ luminance @ _COLS_9.T  # common weight: comparisons need no division
    return _pack((cells[:, :, 1:] > cells[:, :, :-1]).reshape(len(luminance), 64))


def image_hashes(images, batch_size: int = 256) -> np.ndarray:
    """Perceptual hashes of ``N`` uint8 RGB images ``(N, H, W, 3)``: (N, 3) uint64, compared by
    :func:`near_duplicate_pairs`.

    Words: the DCT hash, the row-gradient hash, the column-gradient hash (see the module docstring).
    ``images`` is an array or anything with ``len()`` whose slices are such arrays (a memory map): it is
    read ``batch_size`` images at a time. The result depends on the pixels alone, on every CPU."""
    hashes = np.zeros((len(images), WORDS), dtype=np.uint64)
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start:start + batch_size])
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
            raise ValueError(f"expected uint8 images of shape (N, H, W, 3), got {batch.dtype} {batch.shape}")
        luminance = _luminance(batch)
        hashes[start:start + len(batch)] = np.stack(
            [_dct_hash(luminance), _gradient_hash(luminance), _gradient_hash(luminance.transpose(0, 2, 1))], axis=1)
    return hashes


def near_duplicate_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """All pairs ``(i, j)``, ``i < j``, whose hashes differ in at most ``max_distance`` bits (summed over the
    words of a 2-D ``hashes``): (P, 2) int64, sorted."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    words = (hashes[:, None] if hashes.ndim == 1 else hashes).T.copy()  # (words, N): each word contiguous
    dtype = np.min_scalar_type(64 * len(words))
    found = [np.zeros((0, 2), dtype=np.int64)]
    chunk = max(1, _PAIR_VALUES // max(words.shape[1], 1))  # memory bounded whatever the number of images
    for start in range(0, words.shape[1], chunk):
        block, later = words[:, start:start + chunk, None], words[:, None, start:]
        distance = np.bitwise_count(block[0] ^ later[0]).astype(dtype, copy=False)
        for word in range(1, len(words)):
            distance += np.bitwise_count(block[word] ^ later[word])
        i, j = np.nonzero(distance <= max_distance)
        keep = j > i
        found.append(np.stack([i[keep], j[keep]], axis=1) + start)
    return np.concatenate(found, dtype=np.int64)


def duplicate_groups(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components of ``n`` images linked by ``pairs``: (n,) int64, each the component's smallest index."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in np.asarray(pairs, dtype=np.int64).reshape(-1, 2).tolist():
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return np.array([root(i) for i in range(n)], dtype=np.int64)


# A flat image (a blank frame, a solid colour) has no structure to hash: every bit is 0, so any two flat images
# would be "near-duplicates" whatever their colour. A photo sets about half of its 191 bits; fewer than this
# many set means the image is (nearly) flat, and it is never paired.
MIN_HASH_BITS = 16


def hash_bits(hashes: np.ndarray) -> np.ndarray:
    """Bits set in each image's hash (all words): (N,) int64."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    hashes = hashes[:, None] if hashes.ndim == 1 else hashes
    return np.bitwise_count(hashes).sum(axis=1, dtype=np.int64)


def hash_distance(hashes: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """The summed Hamming distance of each pair's hashes: (P,) int64."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    hashes = hashes[:, None] if hashes.ndim == 1 else hashes
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return np.bitwise_count(hashes[pairs[:, 0]] ^ hashes[pairs[:, 1]]).sum(axis=1, dtype=np.int64)


@dataclass
class NearDuplicates:
    """Near-duplicate images under different split groups, and what ``policy`` does with them.

    ``pairs``: one row per pair, ``image_a, image_b, distance, group_a, group_b`` (groups as ingest formed
    them); ``group_id``: the manifest's group ids afterwards (``group``: each set of linked groups takes the
    id of its first image's group; ``regrouped`` images changed group); ``dropped``: manifest rows to
    quarantine (``quarantine``: all but the first image of each linked set), with ``reasons``.
    """

    policy: str
    max_distance: int
    pairs: pd.DataFrame
    group_id: pd.Series
    regrouped: int
    dropped: np.ndarray
    reasons: list[str]
    uninformative: int = 0  # images too uniform to compare (fewer than MIN_HASH_BITS bits set): never paired

    def summary(self) -> dict:
        """For ``dataset.json``: the policy, threshold, counts and every pair."""
        return {"policy": self.policy, "max_distance": self.max_distance, "n_pairs": len(self.pairs),
                "n_images_regrouped": self.regrouped, "n_quarantined": len(self.dropped),
                "n_images_too_uniform_to_compare": self.uninformative, "pairs": self.pairs.to_dict("records")}


def resolve_near_duplicates(manifest: pd.DataFrame, hashes: np.ndarray, policy: str,
                            max_distance: int = DEFAULT_MAX_DISTANCE) -> NearDuplicates:
    """Find near-duplicate images of ``manifest`` (``hashes`` row for row, from :func:`image_hashes`) that lie
    in different groups, and apply ``policy``: ``group`` (their groups become one), ``quarantine`` (only the
    first image of each linked set is kept) or ``report`` (listed only)."""
    found = near_duplicate_pairs(hashes, max_distance)
    groups = manifest["group_id"].astype(str).to_numpy()
    found = found[groups[found[:, 0]] != groups[found[:, 1]]]  # one group already stays in one split
    informative = hash_bits(hashes) >= MIN_HASH_BITS
    found = found[informative[found[:, 0]] & informative[found[:, 1]]]
    ids = manifest["image_id"].astype(str).to_numpy()
    distance = hash_distance(hashes, found)
    pairs = pd.DataFrame({"image_a": ids[found[:, 0]], "image_b": ids[found[:, 1]], "distance": distance,
                          "group_a": groups[found[:, 0]], "group_b": groups[found[:, 1]]})
    group_id = manifest["group_id"].copy()
    dropped, reasons = np.zeros(0, np.int64), []
    if policy == "group" and len(found):
        codes, names = pd.factorize(groups)  # names in order of first appearance: deterministic
        linked = duplicate_groups(len(names), codes[found])
        group_id = pd.Series(names[linked[codes]], index=manifest.index, name="group_id")
    elif policy == "quarantine" and len(found):
        first = duplicate_groups(len(manifest), found)
        dropped = np.flatnonzero(first != np.arange(len(manifest)))
        reasons = [f"near-duplicate of {ids[first[row]]} across groups (perceptual hashes within distance "
                   f"{max_distance}); ingest.near_duplicates: quarantine keeps one image of each such set"
                   for row in dropped]
    regrouped = int((group_id.astype(str).to_numpy() != groups).sum())
    return NearDuplicates(policy, max_distance, pairs, group_id, regrouped, dropped, reasons,
                          uninformative=int((~informative).sum()))

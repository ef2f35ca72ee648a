"""Near-duplicate detection (:mod:`mobiledx.data.near_duplicates`): recall, false pairs, and speed.

(a) Accuracy. Draws ``--images`` demo photos (600×450 JPEGs, :func:`mobiledx.data.demo.generate_ham10000_demo`)
and makes three altered copies of each (:func:`altered_copy`: colour-shifted, resized to 40-100 %, re-encoded as
JPEG at quality 60-95): "plain" not cropped; "crop≤10%" cropped by 0-10 % on each side; and one cut by a
largest share drawn from 0-10 % on one side and by less on the others, reported by bands of that share. All
are decoded to the cache size as the pipeline does (:func:`mobiledx.data.images.decode_image`). For each
threshold 0, 2 .. 32 it prints the recall (share of copies within that distance of their source) and the
false-pair rate: the share of the distinct photos in a pair with a photo of another lesion (photos of one
lesion are deliberately alike in the demo, so pairs within one are allowed).

(b) Speed. Times :func:`image_hashes` + :func:`near_duplicate_pairs` on ``--timing-images`` random 224 px
images in a memory map, against reading the same batches (``np.array(images[a:b])``) in the same process.

    python benchmarks/near_duplicates.py [--images 1000] [--sizes 96,224] [--timing-images 30000] [--raw DIR]
"""

from __future__ import annotations

import argparse
import io
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from mobiledx.data.demo import generate_ham10000_demo
from mobiledx.data.images import decode_frame, decode_image
from mobiledx.data.near_duplicates import DEFAULT_MAX_DISTANCE, image_hashes, near_duplicate_pairs

THRESHOLDS = range(0, 33, 2)
CROP_BANDS = [0.0, 0.01, 0.02, 0.03, 0.05, 0.1]  # bands of the largest share cut from one side


def altered_copy(data: bytes, rng: np.random.Generator, crop: np.ndarray) -> bytes:
    """Another file of the same photo: ``crop`` (left, right, top, bottom) shares cut off, per-channel gain
    0.93-1.07, brightness ±12, resized to 40-100 %, JPEG quality 60-95."""
    frame = decode_frame(data)
    height, width = frame.shape[:2]
    left, right, top, bottom = (crop * [width, width, height, height]).astype(int)
    pixels = frame[top:height - bottom, left:width - right] * rng.uniform(0.93, 1.07, 3) + rng.uniform(-12, 12)
    image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    scale = rng.uniform(0.4, 1.0)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(60, 96)))
    return buffer.getvalue()


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between the hashes in the rows of ``a`` and ``b``."""
    return np.bitwise_count(a ^ b).sum(axis=1)


def accuracy(raw: Path, sizes: list[int], seed: int = 0) -> dict[int, pd.DataFrame]:
    """Per cache size, a table indexed by threshold: recall of uncropped and cropped copies, false-pair rate."""
    meta = pd.read_csv(raw / "HAM10000_metadata.csv")
    files = {path.stem: path for path in raw.glob("HAM10000_images_part_*/*.jpg")}
    sources = [files[image_id].read_bytes() for image_id in meta.image_id]
    rng = np.random.default_rng(seed)
    copies = {"plain": [altered_copy(data, rng, np.zeros(4)) for data in sources],
              "crop≤10%": [altered_copy(data, rng, rng.uniform(0, 0.1, 4)) for data in sources]}
    largest = rng.uniform(0, CROP_BANDS[-1], len(sources))  # one side cut by this much, the others by less
    crops = rng.uniform(0, largest[:, None], (len(sources), 4))
    crops[np.arange(len(sources)), rng.integers(0, 4, len(sources))] = largest
    copies["banded"] = [altered_copy(data, rng, crop) for data, crop in zip(sources, crops, strict=True)]
    lesion = meta.lesion_id.to_numpy()
    tables = {}
    for size in sizes:
        hashes = image_hashes(np.stack([decode_image(data, size) for data in sources]))
        found = {name: distance(hashes, image_hashes(np.stack([decode_image(data, size) for data in files_])))
                 for name, files_ in copies.items()}
        pairs = near_duplicate_pairs(hashes, max(THRESHOLDS))
        pairs = pairs[lesion[pairs[:, 0]] != lesion[pairs[:, 1]]]
        pair_distance = distance(hashes[pairs[:, 0]], hashes[pairs[:, 1]])
        rows = {}
        for t in THRESHOLDS:
            row = {"plain": np.mean(found["plain"] <= t), "crop≤10%": np.mean(found["crop≤10%"] <= t)}
            for low, high in itertools.pairwise(CROP_BANDS):
                band = (largest >= low) & (largest < high)
                row[f"{100 * low:g}-{100 * high:g}%"] = np.mean(found["banded"][band] <= t)
            row["false"] = len(np.unique(pairs[pair_distance <= t])) / len(meta)
            rows[t] = row
        tables[size] = pd.DataFrame.from_dict(rows, orient="index").rename_axis("max_distance")
    return tables


def timing(n: int, size: int, folder: Path, batch_size: int = 256) -> dict[str, float]:
    """Seconds to read ``n`` random ``size`` px images from a memory map in batches, and to hash + pair them."""
    images = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    tile = np.random.default_rng(1).integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        images[start:stop] = tile[:stop - start] + np.uint8(start // batch_size)  # every image distinct
    images.flush()
    del images
    images = np.load(folder / "images.npy", mmap_mode="r", allow_pickle=False)

    def read() -> float:
        began = time.perf_counter()
        for start in range(0, n, batch_size):
            np.array(images[start:start + batch_size])
        return time.perf_counter() - began

    read()  # warm the page cache: both runs below then read from memory
    baseline = read()
    began = time.perf_counter()
    hashes = image_hashes(images, batch_size)
    hashed = time.perf_counter() - began
    began = time.perf_counter()
    near_duplicate_pairs(hashes, DEFAULT_MAX_DISTANCE)
    paired = time.perf_counter() - began
    return {"read": baseline, "hash": hashed, "pairs": paired}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--sizes", default="96,224")
    parser.add_argument("--timing-images", type=int, default=30_000)
    parser.add_argument("--raw", type=Path, help="an existing demo dataset to use instead of drawing one")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    pd.set_option("display.width", 160)

    with tempfile.TemporaryDirectory() as tmp:
        raw = args.raw
        if raw is None:
            raw = Path(tmp) / "raw"
            began = time.perf_counter()
            generate_ham10000_demo(raw, args.images, seed=0, image_size=(600, 450))
            print(f"drew {args.images} demo photos 600x450 in {time.perf_counter() - began:.0f} s")
        tables = accuracy(raw, sizes)
        for size, table in tables.items():
            print(f"\n{size} px: recall (share of copies found) and false-pair rate (share of distinct photos "
                  f"paired with another lesion's), by max_distance")
            print(table.to_string(float_format=lambda v: f"{v:.3f}"))
        seconds = timing(args.timing_images, 224, Path(tmp))

    total = seconds["hash"] + seconds["pairs"]
    print(f"\n{args.timing_images} images 224 px: read {seconds['read']:.2f} s, hash {seconds['hash']:.2f} s, "
          f"pairs {seconds['pairs']:.2f} s; hash + pairs = {total / seconds['read']:.1f}x the read")
    at_default = {size: table.loc[DEFAULT_MAX_DISTANCE] for size, table in tables.items()}
    print("SUMMARY " + "; ".join(
        f"{size}px@{DEFAULT_MAX_DISTANCE}: recall plain {row['plain']:.3f} crop≤10% {row['crop≤10%']:.3f} "
        f"false {row['false']:.4f}" for size, row in at_default.items())
        + f"; {args.timing_images}x224px hash+pairs {total:.1f} s = {total / seconds['read']:.1f}x read")


if __name__ == "__main__":
    main()

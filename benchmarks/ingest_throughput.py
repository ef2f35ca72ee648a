"""Ingest throughput: mobiledx's parallel ingest vs a single-process PIL loop, in one process.

All decode the same 600×450 JPEGs (HAM10000's size) and resize them to the same square. Two
baselines in the same process: the plain PIL loop a notebook would write, and a single-process
loop over mobiledx's own decode function (so the second ratio isolates the parallel speed-up).
Prints images/s for each and the ratios.

    python benchmarks/ingest_throughput.py [--images 400] [--size 96] [--workers 0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from mobiledx.data.images import load_image
from mobiledx.data.intake import ingest


def write_ham10000_like(root: Path, n_images: int, seed: int = 0) -> None:
    """n_images distinct 600×450 JPEGs + metadata in the HAM10000 layout."""
    rng = np.random.default_rng(seed)
    folder = root / "HAM10000_images_part_1"
    folder.mkdir(parents=True)
    base = rng.integers(0, 255, (450, 600, 3), dtype=np.uint8)
    rows = []
    for i in range(n_images):
        pixels = np.roll(base, shift=i * 7, axis=1) // 2 + rng.integers(0, 128, (1, 1, 3), dtype=np.uint8)
        image_id = f"ISIC_{i:07d}"
        Image.fromarray(pixels).save(folder / f"{image_id}.jpg", quality=90)
        rows.append({"lesion_id": f"HAM_{i:07d}", "image_id": image_id, "dx": "nv", "dx_type": "histo",
                     "age": "50.0", "sex": "male", "localization": "back"})
    pd.DataFrame(rows).to_csv(root / "HAM10000_metadata.csv", index=False)


def baseline_loop(root: Path, size: int) -> np.ndarray:
    """What a notebook does: open each file with PIL, convert to RGB, resize, stack."""
    images = []
    for path in sorted((root / "HAM10000_images_part_1").glob("*.jpg")):
        with Image.open(path) as image:
            images.append(np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)))
    return np.stack(images)


def same_decode_loop(root: Path, size: int) -> np.ndarray:
    """mobiledx's decode (EXIF, draft-mode JPEG, RGB, resize), one file after another in one process."""
    return np.stack([load_image(p, size) for p in sorted((root / "HAM10000_images_part_1").glob("*.jpg"))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--workers", type=int, default=0, help="0 = all cores")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ham"
        write_ham10000_like(root, args.images)
        baseline_loop(root, args.size)  # warm the page cache for both contenders

        start = time.perf_counter()
        reference = baseline_loop(root, args.size)
        baseline_s = time.perf_counter() - start

        start = time.perf_counter()
        same_decode_loop(root, args.size)
        same_decode_s = time.perf_counter() - start

        start = time.perf_counter()
        result = ingest(root, "ham10000", image_size=args.size, workers=args.workers or None)
        ingest_s = time.perf_counter() - start

    assert result.images.shape == reference.shape and result.quarantine.empty
    difference = np.abs(result.images.astype(int) - reference.astype(int)).mean()
    print(f"images: {args.images} JPEGs 600x450 -> {args.size}px, cores: {os.cpu_count()}")
    print(f"baseline single-process PIL loop: {args.images / baseline_s:8.1f} img/s")
    print(f"single-process loop, mobiledx decode: {args.images / same_decode_s:8.1f} img/s")
    print(f"mobiledx ingest (hash + decode + quarantine checks): {args.images / ingest_s:8.1f} img/s")
    print(f"ratio ingest / plain PIL loop: {baseline_s / ingest_s:.2f}x  (mean |pixel difference| {difference:.2f})")
    print(f"ratio ingest / same-decode loop (parallel speed-up): {same_decode_s / ingest_s:.2f}x")


if __name__ == "__main__":
    main()

"""int8 export cost of clipped activation ranges: wall time and peak memory at real size.

mobiledx's int8 variant (``mobiledx.tflite.quantization``) runs the calibration images through the calibrated
float graph a second time to build per-tensor histograms, from which it clips the activation ranges at
``export.int8_range_percentile``. This measures what that pass costs against the converter's own
min/max ranges (``--percentiles 100``, the baseline), each conversion in a fresh child process of this
one (peak RSS of that child alone, from ``wait4``):

- model: ``build_classifier`` (MobileNetV2, ``--alpha``, ``--size`` px, random weights: the cost does
  not depend on trained values), exported once per conversion as the export stage does;
- calibration: ``--images`` random uint8 images, fed from a memory-mapped ``.npy`` like the image cache.

    python benchmarks/int8_calibration.py [--size 224] [--alpha 1.0] [--images 500] [--percentiles 100,99.999]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def convert_once(size: int, alpha: float, images_path: str, percentile: float) -> dict:
    """One int8 conversion in this process: its wall time and the flatbuffer size."""
    from mobiledx.models import build_classifier
    from mobiledx.tflite.conversion import convert

    images = np.load(images_path, mmap_mode="r", allow_pickle=False)
    model = build_classifier(num_classes=7, image_size=size, alpha=alpha, weights="none", dense_units=128)
    start = time.perf_counter()
    flatbuffer = convert(model, "int8", images, range_percentile=percentile)
    return {"seconds": time.perf_counter() - start, "bytes": len(flatbuffer)}


def run_child(args, images_path: str, percentile: float) -> dict:
    """One conversion in a fresh child process; its own peak RSS from ``wait4``."""
    command = [sys.executable, __file__, "--child", images_path, "--size", str(args.size), "--alpha",
               str(args.alpha), "--percentiles", str(percentile)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"the conversion at percentile {percentile} failed (exit {child.returncode})")
    return {**json.loads(output.strip().splitlines()[-1]), "peak_rss_gib": usage.ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--percentiles", default="100,99.999", help="the first is the baseline")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    percentiles = [float(p) for p in args.percentiles.split(",")]
    if args.child:
        print(json.dumps(convert_once(args.size, args.alpha, args.child, percentiles[0])))
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory() as folder:
        images_path = str(Path(folder) / "images.npy")
        images = np.lib.format.open_memmap(images_path, mode="w+", dtype=np.uint8,
                                           shape=(args.images, args.size, args.size, 3))
        images[:] = np.random.default_rng(0).integers(0, 256, images.shape, dtype=np.uint8)
        images.flush()
        del images
        results = {p: run_child(args, images_path, p) for p in percentiles}
    baseline = results[percentiles[0]]
    print(f"int8 conversion, MobileNetV2 alpha {args.alpha}, {args.size} px, {args.images} calibration images")
    for percentile, result in results.items():
        time_ratio = result["seconds"] / baseline["seconds"]
        print(f"  percentile {percentile:g}: {result['seconds']:.1f} s ({time_ratio:.2f}x), "
              f"peak RSS {result['peak_rss_gib']:.2f} GiB ({result['peak_rss_gib'] / baseline['peak_rss_gib']:.2f}x), "
              f"{result['bytes'] / 1e6:.2f} MB")


if __name__ == "__main__":
    main()

"""The error gallery's cost at real size, against the evaluate stage's own prediction pass.

A 7-class MobileNetV2 (``--alpha``, 224 px, untrained: the cost does not depend on the weights) and a test
split of ``--test-images`` random 224 px images in a memory-mapped cache (as ingest writes it). Baseline: one
prediction pass over the split (:func:`mobiledx.models.inference.predict_probabilities`, what evaluate runs per
split). Then the gallery as evaluate builds it (:func:`mobiledx.evaluation.gallery.select_tiles` with the
default 3 + 3 + 2 tiles per class, :class:`mobiledx.models.saliency.Explainer` on those tiles, one PNG per class).
Prints both times,
their ratio, and this process's peak RSS after each step (run under ``/usr/bin/time -v`` for the whole
process's figure). The gallery's cost should follow the tile count, not the split: ``--test-images`` 500
and 2000 give about the same gallery time.

    python benchmarks/gallery_cost.py [--test-images 2000] [--alpha 1.0] [--batch-size 32] [--explain-batch 8]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from mobiledx.data.cache import MappedImages
from mobiledx.evaluation.gallery import select_tiles, write_gallery
from mobiledx.models import build_classifier
from mobiledx.models.inference import predict_probabilities
from mobiledx.models.saliency import EXPLAIN_BATCH, MAP_TITLES, Explainer
from mobiledx.params import EvaluateParams

CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
SIZE = 224


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32, help="prediction batch (train.batch_size)")
    parser.add_argument("--explain-batch", type=int, default=EXPLAIN_BATCH, help="images per Grad-CAM pass")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="gallery-cost-") as scratch:
        cache = Path(scratch) / "images.npy"
        written = np.lib.format.open_memmap(cache, mode="w+", dtype=np.uint8, shape=(args.test_images, SIZE, SIZE, 3))
        for start in range(0, args.test_images, 256):  # in blocks: the cache is never in memory whole
            written[start:start + 256] = rng.integers(0, 256, written[start:start + 256].shape, dtype=np.uint8)
        written.flush()
        del written
        images = MappedImages(cache)
        rows = np.arange(args.test_images)
        y_true = rng.integers(0, len(CLASSES), args.test_images)
        model = build_classifier(len(CLASSES), SIZE, alpha=args.alpha, weights="none")
        print(f"MobileNetV2 alpha {args.alpha}, {SIZE} px, {args.test_images} test images, batch {args.batch_size}, "
              f"Grad-CAM batch {args.explain_batch}; "
              f"peak RSS after building: {peak_rss_gib():.2f} GiB")

        start = time.perf_counter()
        predict_probabilities(model, images, rows, args.batch_size)
        predict_s = time.perf_counter() - start
        print(f"baseline, one prediction pass over the split: {predict_s:.1f} s; peak RSS {peak_rss_gib():.2f} GiB")

        start = time.perf_counter()
        settings = EvaluateParams()
        # an untrained model calls nearly everything one class: draw the scores the tiles are chosen on, so
        # every class has its full count of tiles, as for a trained model
        scores = rng.dirichlet(np.ones(len(CLASSES)), args.test_images)
        tiles = select_tiles(y_true, scores, CLASSES, settings.gallery_errors, settings.gallery_correct)
        chosen = images[rows[tiles["position"].to_numpy()]]
        predicted = np.array([CLASSES.index(c) for c in tiles["predicted_class"]])
        maps = Explainer(model).explain(chosen, predicted, batch_size=args.explain_batch)
        write_gallery(Path(scratch) / "gallery", "benchmark", CLASSES, tiles, chosen, maps, MAP_TITLES)
        gallery_s = time.perf_counter() - start
        print(f"gallery, {len(tiles)} tiles (Grad-CAM + {len(CLASSES)} PNGs): {gallery_s:.1f} s = "
              f"{gallery_s / predict_s:.2f}x the prediction pass; peak RSS {peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()

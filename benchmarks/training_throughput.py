"""Training throughput: model.fit on mobiledx's tf.data input vs a bare model.fit on in-memory tensors.

Same model every time (``mobiledx.models.build_classifier(alpha=0.35, weights="none")`` at ``--size``
px with the pipeline's head, BN momentum 0.9, Adam, categorical cross-entropy + accuracy), built
afresh from the same seed for each run, same batch size, same ``--images`` synthetic uint8 images.

- **bare**: ``model.fit(x, y, batch_size=32)`` with ``x`` a float32 tensor already in memory
  (Keras shuffles it each epoch); no augmentation, no sample weights.
- **pipeline, no augmentation**: ``model.fit`` on ``mobiledx.training.make_dataset`` as training builds
  it: per-batch gather of row indices from the uint8 array, cast to float32, seeded shuffle, prefetch,
  per-sample weights (class-balanced, as the class_weight rebalance gives). This is the like-for-like
  comparison with the bare fit: the only difference is the input path.
- **pipeline + augmentation**: the same with ``augmentation_layers(--augmentation, seed)`` in the map
  (training's ``augment: true``); it does more work than the bare fit, so its ratio is not like-for-like.
- **pipeline from the mapped cache** (``--mapped``): the like-for-like pipeline reading the same images
  from an ``images.npy`` through :class:`mobiledx.data.cache.MappedImages` (memory map, pages released
  as it reads), as the train stage does; its ratio to the in-memory pipeline is the cost of not
  holding the dataset in memory.

Each run trains 1 untimed warm-up epoch (graph build, 25-40 s on a 2-core CPU) and then ``--epochs``
timed epochs; throughput = images / wall time of the timed epochs (epoch begin to end, so the input
pipeline's per-epoch restart is charged). Op determinism is on for every run by default, as in
``mobiledx.training.fit`` (``--no-deterministic`` turns it off for all runs).

    python benchmarks/training_throughput.py [--images 512] [--size 96] [--epochs 3] [--augmentation mobiledx]
        [--mapped]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from mobiledx.data.batches import make_dataset
from mobiledx.data.cache import MappedImages
from mobiledx.models import build_classifier
from mobiledx.models.augmentation import PRESETS, augmentation_layers

NUM_CLASSES = 7


def epoch_timer():
    """A Keras callback recording the wall time of every epoch in ``.seconds``."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []
            self._start = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def fresh_model(args):
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(args.seed)
    model = build_classifier(
        num_classes=NUM_CLASSES,
        image_size=args.size,
        alpha=args.alpha,
        weights="none",
        dense_units=512,
        dropout=0.2,
        bn_momentum=0.9,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def timed_fit(args, fit) -> tuple[float, list[float]]:
    """Build a fresh model, fit 1 + epochs epochs; (timed images/s, per-epoch images/s)."""
    model = fresh_model(args)
    timer = epoch_timer()
    fit(model, [timer], 1 + args.epochs)
    timed = timer.seconds[1:]
    return args.images * len(timed) / sum(timed), [args.images / s for s in timed]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per run (after 1 warm-up epoch)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--alpha", type=float, default=0.35, help="MobileNetV2 width")
    parser.add_argument(
        "--augmentation",
        default="mobiledx",
        choices=[p for p in PRESETS if p != "none"],
        help="preset for the augmented pipeline run",
    )
    parser.add_argument("--skip-augmented", action="store_true", help="only the like-for-like runs")
    parser.add_argument("--mapped", action="store_true", help="also run the pipeline from a memory-mapped cache")
    parser.add_argument(
        "--no-deterministic",
        dest="deterministic",
        action="store_false",
        help="leave TF op determinism off (training.fit turns it on)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="repeat every run this many times, rotating their order; medians are reported",
    )
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(args.seed)
    images = rng.integers(0, 256, (args.images, args.size, args.size, 3), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, args.images)
    targets = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    weights = (args.images / (NUM_CLASSES * np.maximum(counts, 1)))[labels].astype(np.float32)
    rows = np.arange(args.images)

    x_tensor = tf.constant(images.astype(np.float32))
    y_tensor = tf.constant(targets)

    def bare(model, callbacks, epochs):
        model.fit(x_tensor, y_tensor, batch_size=args.batch_size, epochs=epochs, callbacks=callbacks, verbose=0)

    def pipeline(preset, source=images):
        def fit(model, callbacks, epochs):
            augmenter = augmentation_layers(preset, args.seed)  # None for "none"; fresh per run
            data = make_dataset(
                source, rows, targets, weights, args.batch_size, shuffle_seed=args.seed, augmenter=augmenter
            )
            model.fit(data, epochs=epochs, callbacks=callbacks, shuffle=False, verbose=0)

        return fit

    runs = {"bare": bare, "pipeline": pipeline("none")}
    if not args.skip_augmented:
        runs["augmented"] = pipeline(args.augmentation)
    scratch = tempfile.TemporaryDirectory()
    if args.mapped:
        np.save(Path(scratch.name) / "images.npy", images)
        runs["mapped"] = pipeline("none", MappedImages(Path(scratch.name) / "images.npy"))
    keys = list(runs)
    measured: dict[str, list[tuple[float, list[float]]]] = {key: [] for key in keys}
    start = time.perf_counter()
    for repeat in range(args.repeats):
        for key in keys[repeat % len(keys) :] + keys[: repeat % len(keys)]:  # rotate the order
            measured[key].append(timed_fit(args, runs[key]))
    total_s = time.perf_counter() - start
    results = {
        key: (
            float(np.median([rate for rate, _ in measured[key]])),
            [r for _, per_epoch in measured[key] for r in per_epoch],
        )
        for key in keys
    }

    print(
        f"\nMobileNetV2 alpha {args.alpha}, {args.size}px, {args.images} images, batch {args.batch_size}, "
        f"{args.epochs} timed epochs after 1 warm-up per run, {args.repeats} repeat(s) (median), op determinism "
        f"{'on' if args.deterministic else 'off'}, cores: {os.cpu_count()}, total {total_s:.0f} s"
    )
    names = {
        "bare": "bare model.fit(float32 tensor, y), no augmentation",
        "pipeline": "make_dataset (gather uint8 -> float32), no augmentation",
        "augmented": f"make_dataset + augmentation preset {args.augmentation!r}",
        "mapped": "make_dataset from the memory-mapped cache, no augmentation",
    }
    for key, (rate, per_epoch) in results.items():
        spread = ", ".join(f"{r:.0f}" for r in per_epoch)
        print(f"{names[key]:<60} {rate:8.1f} img/s   (per epoch: {spread})")
    bare_rate = results["bare"][0]
    like = results["pipeline"][0] / bare_rate
    print(f"ratio pipeline (no augmentation) / bare: {like:.2f}x  <- like-for-like (same work, different input path)")
    summary = (
        f"SUMMARY training throughput: pipeline {results['pipeline'][0]:.0f} img/s vs bare fit "
        f"{bare_rate:.0f} img/s = {like:.2f}x like-for-like (goal >= 0.9x)"
    )
    if "augmented" in results:
        aug = results["augmented"][0] / bare_rate
        print(
            f"ratio pipeline + {args.augmentation} augmentation / bare: {aug:.2f}x  "
            "(not like-for-like: the bare fit does no augmentation)"
        )
        summary += f"; {aug:.2f}x with {args.augmentation} augmentation"
    if "mapped" in results:
        mapped = results["mapped"][0] / results["pipeline"][0]
        print(f"ratio mapped cache / in-memory array (same pipeline): {mapped:.2f}x")
        summary += f"; mapped cache {mapped:.2f}x the in-memory array (goal >= 0.95x)"
    print(summary)
    scratch.cleanup()


if __name__ == "__main__":
    main()

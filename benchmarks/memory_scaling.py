"""Memory scaling: peak memory of the real stages against the dataset size, and of train against the model's floor.

Generates N realistic 600×450 JPEGs in the HAM10000 layout (metadata CSV, ``HAM10000_images_part_1/``
and ``_part_2/``, HAM10000's class shares, several images per lesion), then runs the real stage
scripts (``stages/ingest.py``, ``split.py``, ``rebalance.py``, ``train.py``) on it, each in its own
process, for every N. Train runs one short epoch: ``rebalance.train_fraction`` keeps about
``--train-images`` training images whatever N is (a few steps), and validation covers the whole
validation split (15 % of N), as a real epoch does.

Train prints its own estimate of its peak memory before it fits; the benchmark sets it beside the
measured peak RSS of the train process (what the kernel's OOM killer counts) for every alpha and
batch size in ``--batch-sizes``: the estimate should be within 15 % of it.

Peak memory is sampled every 0.2 s over the whole process tree (ingest's decode workers included):

- **PSS**: proportional set size summed over the tree: pages shared between processes (forked
  workers, libraries) counted once, the honest total;
- **RSS**: the largest resident set of a single process (what ``/usr/bin/time -v`` reports).

The floor is a bare ``model.fit`` of the same model (same backbone, alpha, size and batch) on one
in-memory batch repeated, in its own process: what the model itself needs. Ratios are train's
peak over that floor, and each stage's peak at the largest N over its peak at the smallest.

    python benchmarks/memory_scaling.py [--images 1000,10000,30000] [--alphas 1.0,0.35] [--size 224]
        [--batch-sizes 32] [--train-images 160] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
HAM10000_SHARES = {"akiec": 327, "bcc": 514, "bkl": 1099, "df": 115, "mel": 1113, "nv": 6705, "vasc": 142}
IMAGES_PER_PART = 5000  # HAM10000_images_part_1 holds the first 5,000 images, as in the real release
DATASET = "bench"
GIB = 2**30


# --------------------------------------------------------------------------- data


def _write_jpeg(task: tuple[str, int]) -> None:
    """One 600×450 JPEG: a smooth skin-like background, a darker blob and sensor noise (about 100 KB)."""
    path, seed = task
    rng = np.random.default_rng(seed)
    coarse = rng.integers(140, 230, (6, 8, 3), dtype=np.uint8)
    background = np.asarray(Image.fromarray(coarse).resize((600, 450), Image.Resampling.BICUBIC), np.float32)
    yy, xx = np.mgrid[0:450, 0:600]
    cy, cx, radius = rng.uniform(150, 300), rng.uniform(200, 400), rng.uniform(40, 140)
    blob = np.clip(1.2 - np.hypot(yy - cy, xx - cx) / radius, 0, 1)[..., None]
    pixels = background * (1 - 0.6 * blob) + rng.normal(0, 6, (450, 600, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)


def write_dataset(root: Path, n_images: int, seed: int = 0, workers: int | None = None) -> None:
    """``n_images`` distinct JPEGs with ``HAM10000_metadata.csv``, in the real release's layout."""
    rng = np.random.default_rng(seed)
    classes = list(HAM10000_SHARES)
    shares = np.array(list(HAM10000_SHARES.values()), float)
    rows, tasks, lesion = [], [], 0
    while len(rows) < n_images:
        dx = classes[rng.choice(len(classes), p=shares / shares.sum())]
        for _ in range(min(int(rng.choice([1, 1, 1, 2, 2, 3])), n_images - len(rows))):
            number = len(rows)
            image_id = f"ISIC_{24306 + number:07d}"
            part = 1 if number < IMAGES_PER_PART else 2
            folder = root / f"HAM10000_images_part_{part}"
            folder.mkdir(parents=True, exist_ok=True)
            tasks.append((str(folder / f"{image_id}.jpg"), seed * 1_000_003 + number))
            rows.append({"lesion_id": f"HAM_{lesion:07d}", "image_id": image_id, "dx": dx, "dx_type": "histo",
                         "age": f"{float(rng.integers(3, 18) * 5):.1f}", "sex": ["male", "female"][number % 2],
                         "localization": "back"})
        lesion += 1
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        list(pool.map(_write_jpeg, tasks, chunksize=64))
    pd.DataFrame(rows).to_csv(root / "HAM10000_metadata.csv", index=False)


def subset(full: Path, root: Path, n_images: int) -> None:
    """The first ``n_images`` of ``full`` (hard links: no copy) with their metadata rows."""
    metadata = pd.read_csv(full / "HAM10000_metadata.csv", dtype=str, keep_default_na=False).iloc[:n_images]
    for row in metadata.itertuples(index=False):
        source = next(full.glob(f"HAM10000_images_part_*/{row.image_id}.jpg"))
        target = root / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target)
    metadata.to_csv(root / "HAM10000_metadata.csv", index=False)


# --------------------------------------------------------------------------- measurement


def measure(command: list[str], cwd: Path, log: Path) -> dict:
    """Run ``command``; its wall time and peak memory (PSS over the process tree, largest single RSS)."""
    import psutil

    peaks = {"pss": 0, "rss": 0}
    with open(log, "w") as output:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        root = psutil.Process(process.pid)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                pss = 0
                try:
                    tree = [root, *root.children(recursive=True)]
                except psutil.Error:
                    break
                for member in tree:
                    try:
                        info = member.memory_full_info()
                    except psutil.Error:
                        continue
                    pss += info.pss
                    peaks["rss"] = max(peaks["rss"], info.rss)
                peaks["pss"] = max(peaks["pss"], pss)
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        status = process.wait()
        done.set()
        sampler.join()
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {status}); see {log}:\n{log.read_text()[-3000:]}")
    return {"seconds": time.perf_counter() - start, **peaks}


def project(workdir: Path, raw: Path, n_images: int, args, alpha: float, batch_size: int) -> Path:
    """A project folder whose params.yaml registers ``raw`` and sizes the run for ``n_images``."""
    folder = workdir / f"project-{n_images}"
    folder.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["datasets"] = {DATASET: {"kind": "ham10000", "path": str(raw)}}
    for demo_only in ("external_datasets", "external"):  # they name the demo datasets replaced here
        params.pop(demo_only, None)
    params["ingest"].update(image_size=args.size, workers=0)
    train_share = 1.0 - params["split"]["test_fraction"] - params["split"]["val_fraction"]
    params["rebalance"]["train_fraction"] = min(1.0, args.train_images / (train_share * n_images))
    params["train"].update(alpha=alpha, epochs=1, batch_size=batch_size, weights="none")
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return folder


def printed_estimate(log: Path) -> float:
    """The peak memory (bytes) train estimated for itself, read from its log."""
    found = re.search(r"estimated peak memory of training: ([0-9.]+) GiB", log.read_text())
    if not found:
        raise SystemExit(f"{log} has no memory estimate line")
    return float(found.group(1)) * GIB


def stage(name: str) -> list[str]:
    return [sys.executable, str(REPO / "stages" / f"{name}.py"), DATASET]


def bare_fit(alpha: float, size: int, batch_size: int, steps: int) -> None:
    """The floor: a bare model.fit of the train stage's model on one in-memory batch, ``steps`` times."""
    import keras
    import tensorflow as tf

    from mobiledx.models import build_classifier

    keras.utils.set_random_seed(0)
    model = build_classifier(len(HAM10000_SHARES), size, alpha=alpha, weights="none", bn_momentum=0.9)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    pixels = np.random.default_rng(0).integers(0, 256, (batch_size, size, size, 3)).astype(np.float32)
    targets = np.eye(len(HAM10000_SHARES), dtype=np.float32)[np.arange(batch_size) % len(HAM10000_SHARES)]
    model.fit(tf.data.Dataset.from_tensors((pixels, targets)).repeat(steps), epochs=1, verbose=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="1000,10000,30000", help="dataset sizes N, comma-separated")
    parser.add_argument("--alphas", default="1.0,0.35",
                        help="MobileNetV2 widths for the short train ('' = no train: ingest, split, rebalance only)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-sizes", default="32",
                        help="train batch sizes, comma-separated (the first one is used for the floor)")
    parser.add_argument("--train-images", type=int, default=160, help="training images of the short epoch")
    parser.add_argument("--workdir", type=Path, help="where data and projects go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--bare-fit", nargs=4, metavar=("ALPHA", "SIZE", "BATCH", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_fit:
        alpha, size, batch, steps = args.bare_fit
        bare_fit(float(alpha), int(size), int(batch), int(steps))
        return

    sizes = sorted(int(n) for n in args.images.split(","))
    alphas = [float(a) for a in args.alphas.split(",") if a]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mobiledx-memory-"))
    workdir.mkdir(parents=True, exist_ok=True)
    full = workdir / f"raw-{sizes[-1]}"
    start = time.perf_counter()
    if not (full / "HAM10000_metadata.csv").exists():
        shutil.rmtree(full, ignore_errors=True)
        write_dataset(full, sizes[-1])
    print(
        f"data: {sizes[-1]} JPEGs 600x450 in {full} "
        f"({sum(p.stat().st_size for p in full.rglob('*.jpg')) / GIB:.2f} GiB, "
        f"{time.perf_counter() - start:.0f} s)",
        flush=True,
    )

    results: dict[tuple, dict] = {}
    for n_images in sizes:
        raw = full if n_images == sizes[-1] else workdir / f"raw-{n_images}"
        if not (raw / "HAM10000_metadata.csv").exists():
            shutil.rmtree(raw, ignore_errors=True)
            subset(full, raw, n_images)
        folder = project(workdir, raw, n_images, args, alphas[0] if alphas else 0.35, batch_sizes[0])
        for name in ("ingest", "split", "rebalance"):
            results[(n_images, name)] = measure(stage(name), folder, folder / f"{name}.log")
            print(
                f"N={n_images:>6} {name:<10} {results[(n_images, name)]['seconds']:7.1f} s  "
                f"peak PSS {results[(n_images, name)]['pss'] / GIB:5.2f} GiB",
                flush=True,
            )
        for alpha in alphas:
            for batch_size in batch_sizes:
                project(workdir, raw, n_images, args, alpha, batch_size)
                key = (n_images, f"train a{alpha}", batch_size)
                log = folder / f"train-{alpha}-{batch_size}.log"
                results[key] = {**measure(stage("train"), folder, log), "estimate": printed_estimate(log)}
                print(
                    f"N={n_images:>6} train a{alpha:<4} batch {batch_size:<3} {results[key]['seconds']:7.1f} s  "
                    f"peak PSS {results[key]['pss'] / GIB:5.2f} GiB, RSS {results[key]['rss'] / GIB:5.2f} GiB, "
                    f"estimated {results[key]['estimate'] / GIB:5.2f} GiB",
                    flush=True,
                )
            results[(n_images, f"train a{alpha}")] = results[(n_images, f"train a{alpha}", batch_sizes[0])]
        shutil.rmtree(folder / "data", ignore_errors=True)  # free the disk before the next N

    steps = -(-args.train_images // batch_sizes[0]) + 2
    floors = {
        alpha: measure(
            [sys.executable, __file__, "--bare-fit", str(alpha), str(args.size), str(batch_sizes[0]), str(steps)],
            workdir,
            workdir / f"bare-{alpha}.log",
        )
        for alpha in alphas
    }

    print(
        f"\nPeak memory against dataset size ({args.size} px, batch {batch_sizes[0]}, cores: {os.cpu_count()}); "
        "PSS = the process tree's total, RSS = the largest single process"
    )
    print(f"{'stage':<14}" + "".join(f"{f'N={n}':>24}" for n in sizes) + f"{'largest/smallest N':>22}")
    for name in ["ingest", "split", "rebalance", *(f"train a{a}" for a in alphas)]:
        cells = "".join(
            f"{results[(n, name)]['pss'] / GIB:8.2f} GiB ({results[(n, name)]['seconds']:6.0f} s)" for n in sizes
        )
        ratio = results[(sizes[-1], name)]["pss"] / results[(sizes[0], name)]["pss"]
        print(f"{name:<14}{cells}{ratio:21.3f}x")
    for alpha in alphas:
        floor = floors[alpha]
        worst = max(results[(n, f"train a{alpha}")]["pss"] for n in sizes)
        print(
            f"train alpha {alpha}: bare model.fit floor {floor['pss'] / GIB:.2f} GiB PSS "
            f"({floor['rss'] / GIB:.2f} GiB RSS); train peak {worst / GIB:.2f} GiB "
            f"= {worst / floor['pss']:.2f}x the floor"
        )
    print("\nTrain's own estimate against its measured peak RSS (the train process, the OOM killer's figure)")
    errors = []
    for (n_images, name, *batch), result in results.items():
        if batch:
            errors.append(result["estimate"] / result["rss"] - 1)
            print(f"N={n_images:>6} {name:<10} batch {batch[0]:<3} estimated {result['estimate'] / GIB:5.2f} GiB, "
                  f"measured {result['rss'] / GIB:5.2f} GiB RSS: {errors[-1]:+.1%}")
    ingest_flat = results[(sizes[-1], "ingest")]["pss"] / results[(sizes[0], "ingest")]["pss"]
    print(
        f"SUMMARY memory scaling: ingest {results[(sizes[-1], 'ingest')]['pss'] / GIB:.2f} GiB at N={sizes[-1]} "
        f"({ingest_flat:.3f}x N={sizes[0]}; goal <= 1 GiB, within 10 %); "
        + "; ".join(
            f"train alpha {a} {max(results[(n, f'train a{a}')]['pss'] for n in sizes) / floors[a]['pss']:.2f}x "
            f"the bare-fit floor (goal <= 1.5x, <= 6 GiB)"
            for a in alphas
        )
        + (f"; train's memory estimate within {max(map(abs, errors)):.1%} of its peak RSS over "
           f"{len(errors)} runs (goal <= 15 %)" if errors else "")
    )
    if not (args.keep or args.workdir):
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

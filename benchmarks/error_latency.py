"""Seconds from a stage's start to its error message, for the errors a real download meets (issue 25: within 2 s).

Each stage runs as DVC runs it (``python stages/<stage>.py ham`` in a project folder) on a HAM10000-layout
download whose metadata lists all 10,015 images, 7 classes in their real counts:

* ``validate``, partial download: ``--present`` of the listed images are there (600×450 JPEGs, ingested first,
  not timed); the rest are listed without a file, so the quarantine limit fails. Baseline: the same stage's
  whole run, to its exit, which writes the Great Expectations report after the message.
* ``ingest``, nothing extracted: the images are still in their zip archive. Baseline: ingest of the same
  download extracted (20 images present).
* ``train``, ``weights: imagenet`` offline (an empty Keras cache; the download host unreachable). Baseline: a
  fresh interpreter importing TensorFlow and MLflow, which the stage loads only after the check.

Prints, per case, the median over ``--repeats`` runs of the time to the first ``mobiledx: error:`` line, of
the baseline, and their ratio, then the error's first line.

    python benchmarks/error_latency.py [--present 240] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' project helper, reused
from tests.support import ham_project  # noqa: E402

CLASS_COUNTS = {"akiec": 327, "bcc": 514, "bkl": 1099, "df": 115, "mel": 1113, "nv": 6705, "vasc": 142}
ERROR = "mobiledx: error: "


def write_download(root: Path, present: int, zipped: bool) -> None:
    """HAM10000 metadata listing 10,015 images; the first ``present`` as 600×450 JPEGs (in a zip if ``zipped``)."""
    rng = np.random.default_rng(0)
    labels = [label for label, count in CLASS_COUNTS.items() for _ in range(count)]
    rng.shuffle(labels)
    rows = [{"lesion_id": f"HAM_{i // 2:07d}", "image_id": f"ISIC_{24306 + i:07d}", "dx": label, "dx_type": "histo",
             "age": "50.0", "sex": "male", "localization": "back"} for i, label in enumerate(labels)]
    root.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(root / "HAM10000_metadata.csv", index=False)
    folder = root / "HAM10000_images_part_1"
    folder.mkdir()
    base = rng.integers(0, 255, (450, 600, 3), dtype=np.uint8)
    for i, row in enumerate(rows[:present]):
        Image.fromarray(np.roll(base, i * 7, axis=1)).save(folder / f"{row['image_id']}.jpg", quality=90)
    if zipped:
        with zipfile.ZipFile(root / "HAM10000_images_part_1.zip", "w") as archive:
            for path in sorted(folder.iterdir()):
                archive.write(path, f"HAM10000_images_part_1/{path.name}")
                path.unlink()
        folder.rmdir()


def timed_stage(stage: str, project: Path, env: dict[str, str]) -> tuple[float | None, float, str]:
    """Run ``stages/<stage>.py ham``: seconds to the first error line (None: no error), seconds to its exit,
    and the error's first line."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(REPO / "stages" / f"{stage}.py"), "ham"], cwd=project,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    to_message, first_line = None, ""
    for line in process.stderr:
        if to_message is None and line.startswith(ERROR):
            to_message, first_line = time.perf_counter() - start, line.strip()
    process.wait()
    return to_message, time.perf_counter() - start, first_line


def import_time(modules: str, env: dict[str, str]) -> float:
    """Seconds for a fresh interpreter to import ``modules`` (comma-separated)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {modules}"], check=True, env=env, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--present", type=int, default=240, help="listed images present in the partial download")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="error-latency-") as scratch:
        env = {**os.environ, "GX_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(REPO / "src"),
               "KERAS_HOME": str(Path(scratch) / "keras")}
        partial = ham_project(Path(scratch) / "partial")
        write_download(partial / "data" / "raw" / "ham", args.present, zipped=False)
        _, ingest_s, _ = timed_stage("ingest", partial, env)
        print(f"partial download: {args.present} of 10,015 listed images present (ingest {ingest_s:.1f} s)")
        unextracted = ham_project(Path(scratch) / "unextracted")
        write_download(unextracted / "data" / "raw" / "ham", 20, zipped=True)
        extracted = ham_project(Path(scratch) / "extracted")
        write_download(extracted / "data" / "raw" / "ham", 20, zipped=False)
        offline = ham_project(Path(scratch) / "offline", train={"weights": "imagenet"})
        cases = {
            "validate, partial download": ("validate", partial, "the same run, to its exit (report written)",
                                           lambda total: total),
            "ingest, nothing extracted": ("ingest", unextracted, "ingest of the same download extracted",
                                          lambda total: timed_stage("ingest", extracted, env)[1]),
            "train, imagenet offline": ("train", offline, "importing TensorFlow and MLflow, which the check precedes",
                                        lambda total: import_time("tensorflow, mlflow", env)),
        }
        print("| case | to the message (s) | baseline | baseline (s) | ratio |\n|---|---|---|---|---|")
        for case, (stage, project, baseline_name, baseline_of) in cases.items():
            messages, baselines = [], []
            for _ in range(args.repeats):
                to_message, total, first_line = timed_stage(stage, project, env)
                if to_message is None:
                    raise SystemExit(f"{case}: the stage printed no error")
                messages.append(to_message)
                baselines.append(baseline_of(total))
            message, baseline = statistics.median(messages), statistics.median(baselines)
            print(f"| {case} | {message:.2f} | {baseline_name} | {baseline:.2f} | {message / baseline:.2f} |")
            print(f"|   ({first_line[:110]}…) |")


if __name__ == "__main__":
    main()

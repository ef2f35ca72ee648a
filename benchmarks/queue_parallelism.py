"""Queued experiments: wall time of the same number of experiments at `dvc queue start -j 1` vs `-j 2`.

Builds a tiny copy of the pipeline (the integration tests' TINY params: 32 px, 120 demo-skin
images) in a throwaway git + DVC repository, runs `dvc repro` up to the stages the experiments
need, then, for each worker count, queues ``--experiments`` experiments
(`dvc exp run --queue <target> -S lr=...`, one learning rate each, never reused so neither run
cache nor a finished experiment can short-cut the second round) and times `dvc queue start -j N`
until the queue is empty. Prints both wall times and their ratio. Every experiment logs to the
copy's own MLflow store.

    python benchmarks/queue_parallelism.py [--experiments 4] [--target export@demo-skin] [--epochs 1]
                                           [--workdir DIR] [--keep]

On a 2-core CPU the stages themselves use both cores part of the time (TensorFlow), so -j 2
gains less than 2x; DVC's per-experiment overhead (copying the repository into .dvc/tmp/exps,
checking out the inputs) runs in parallel too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the integration tests' tiny project, reused
from tests.support.project import TINY, dvc_env, make_project, run  # noqa: E402


def timed_queue(root: Path, target: str, learning_rates: list[str], epochs: int, jobs: int) -> float:
    """Queue one experiment per learning rate, then time `dvc queue start -j jobs` until all have finished."""
    done_before = run(["dvc", "queue", "status"], root).count("Success")
    run(["dvc", "exp", "run", "--queue", target, "-S", f"lr={','.join(learning_rates)}",
        "-S", f"train.epochs={epochs}"], root)
    started = time.perf_counter()
    run(["dvc", "queue", "start", "-j", str(jobs)], root)
    while True:
        status = run(["dvc", "queue", "status"], root)
        if "Failed" in status:
            sys.exit(f"an experiment failed:\n{status}")
        # a task a worker is just taking is briefly neither Queued nor Running: count the finished ones
        finished = status.count("Success") - done_before
        if finished >= len(learning_rates) and not any(word in status for word in ("Queued", "Running")):
            break
        time.sleep(2)
    elapsed = time.perf_counter() - started
    wait_for_workers(root)
    return elapsed


def wait_for_workers(root: Path, timeout: float = 120) -> None:
    """Until the queue's workers have shut down (so that the next round starts its own)."""
    deadline = time.monotonic() + timeout
    while "Worker status: 0 active, 0 idle" not in run(["dvc", "queue", "status"], root):
        if time.monotonic() > deadline:
            sys.exit("queue workers still alive after the experiments finished")
        time.sleep(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=4)
    parser.add_argument(
        "--target", default="export@demo-skin", help="stage the experiments reproduce (and its upstream)"
    )
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None, help="where to build the project (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the project afterwards")
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mobiledx-queue-bench-"))
    root = workdir / "project"
    root.mkdir(parents=True)
    try:
        started = time.perf_counter()
        make_project(root, TINY)
        run(["dvc", "repro", args.target], root)
        run(["git", "add", "-A"], root)
        run(["git", "commit", "-q", "-m", f"repro {args.target}"], root)
        print(f"built the tiny project ({args.target} and upstream) in {time.perf_counter() - started:.0f} s")
        rates = iter(f"{0.001 * 0.8**i:.6g}" for i in range(1, 2 * args.experiments + 1))
        seconds = {}
        for jobs in (1, 2):
            learning_rates = [next(rates) for _ in range(args.experiments)]
            seconds[jobs] = timed_queue(root, args.target, learning_rates, args.epochs, jobs)
            print(
                f"-j {jobs}: {args.experiments} queued experiments ({args.target}, {args.epochs} epoch) "
                f"in {seconds[jobs]:.1f} s",
                flush=True,
            )
        print(f"-j 2 vs -j 1: {seconds[1] / seconds[2]:.2f}x faster ({os.cpu_count()} CPU cores)")
    finally:
        subprocess.run(["dvc", "queue", "stop", "--kill"], cwd=root, env=dvc_env(), capture_output=True)
        if args.keep:
            print(f"project kept in {root}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

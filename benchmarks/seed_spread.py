"""Seed spread of the demo recipe: the default params trained with several seeds on the same demo data.

Builds a copy of the pipeline with the default params (the committed demo recipe) in a throwaway git +
DVC repository, runs the data stages once, then `dvc exp run -S seed=<k>` for every seed (split,
training, evaluation and export re-run; the demo data, which has its own `demo.seed`, does not).
Prints, per dataset and headline figure, mean ± sd, min and max over the seeds, checks them against
issue 24's goals, and prints `mobiledx seeds` for each dataset (the same runs, read from the copy's
MLflow store). About 4 minutes per seed on 2 cores.

    python benchmarks/seed_spread.py [--seeds 0 1 2 3 4] [--set train.epochs=30 ...] [--json FILE]
                                     [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the integration tests' project helpers, reused
from tests.support.project import DATASETS, make_project, run  # noqa: E402

FIGURES = {  # headline file -> figures summarised
    "evaluation": ("val_balanced_accuracy", "val_macro_auc", "test_balanced_accuracy", "test_macro_auc",
                   "test_op_sensitivity", "test_op_specificity"),
    "export": ("int8_agreement_with_keras",),
}
# Issue 24's goals for the default recipe: (figure, dataset or None for all, test, threshold)
GOALS = [
    ("test_balanced_accuracy", None, "sd <=", 0.03),
    ("test_balanced_accuracy", "demo-blood", "min >=", 0.85),
    ("test_balanced_accuracy", "demo-skin", "min >=", 0.80),
    ("int8_agreement_with_keras", None, "min >=", 0.97),
]


def headline_figures(root: Path, dataset: str, stages: tuple[str, ...]) -> dict[str, float]:
    figures = {}
    for stage, names in FIGURES.items():
        if stage not in stages:
            continue
        headline = json.loads((root / "data" / stage / dataset / "headline.json").read_text())[dataset]
        figures.update({name: headline[name] for name in names if name in headline})
    return figures


def spread(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0, "min": min(values), "max": max(values)}


def goal_results(summary: dict) -> list[tuple[str, bool]]:
    results = []
    for figure, only, test, threshold in GOALS:
        for dataset in ([only] if only else DATASETS):
            if figure not in summary.get(dataset, {}):
                continue
            stats = summary[dataset][figure]
            value = stats["sd"] if test.startswith("sd") else stats["min"]
            met = value <= threshold if "<=" in test else value >= threshold
            results.append((f"{dataset} {figure} {test} {threshold}: {value:.3f}", met))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra `dvc exp run -S` overrides for every seed (a recipe to try)")
    parser.add_argument("--targets", nargs="*", default=[],
                        help="stages to reproduce per seed (default: all; e.g. evaluate@demo-skin to skip export)")
    parser.add_argument("--json", type=Path, help="also write the per-seed figures and the summary here")
    parser.add_argument("--workdir", type=Path, default=None, help="where to build the project (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the project afterwards")
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mobiledx-seed-spread-"))
    root = workdir / "project"
    try:
        started = time.perf_counter()
        make_project(root, {})
        snapshot = {"PYTHONPATH": str(root / "src")}  # the copy's code, not the (editable) working tree's
        run(["dvc", "repro", *(f"rebalance@{dataset}" for dataset in DATASETS)], root, timeout=1800, env=snapshot)
        run(["git", "add", "-A"], root)
        run(["git", "commit", "-q", "-m", "data stages"], root)
        print(f"data stages in {time.perf_counter() - started:.0f} s", flush=True)
        datasets = [dataset for dataset in DATASETS  # with --targets, the datasets they name
                    if not args.targets or any(target.endswith(f"@{dataset}") for target in args.targets)]
        per_seed: dict[str, dict[int, dict[str, float]]] = {dataset: {} for dataset in datasets}
        overrides = [option for pair in args.set for option in ("-S", pair)]
        exported = not args.targets or any(target.startswith("export") for target in args.targets)
        stages = ("evaluation", "export") if exported else ("evaluation",)
        for seed in args.seeds:
            started = time.perf_counter()
            run(["dvc", "exp", "run", *args.targets, "-S", f"seed={seed}", *overrides], root, timeout=3600,
                env=snapshot)
            for dataset in datasets:
                per_seed[dataset][seed] = headline_figures(root, dataset, stages)
                shown = ", ".join(f"{k} {v:.3f}" for k, v in per_seed[dataset][seed].items())
                print(f"seed {seed} {dataset}: {shown}", flush=True)
            print(f"seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
        summary = {dataset: {figure: spread([figures[figure] for figures in runs.values()])
                             for figure in next(iter(runs.values()))}
                   for dataset, runs in per_seed.items()}
        print(f"\nover seeds {args.seeds}" + (f" with {' '.join(args.set)}" if args.set else ""))
        for dataset, figures in summary.items():
            for figure, stats in figures.items():
                print(f"{dataset:10s} {figure:26s} {stats['mean']:.3f} ± {stats['sd']:.3f} "
                      f"[{stats['min']:.3f}, {stats['max']:.3f}]")
        goals = goal_results(summary)
        for text, met in goals:
            print(f"{'met   ' if met else 'MISSED'} {text}")
        if args.json:
            args.json.write_text(json.dumps({"seeds": args.seeds, "overrides": args.set, "per_seed": per_seed,
                                             "summary": summary, "goals": dict(goals)}, indent=1))
        for dataset in datasets:
            print(run(["mobiledx", "seeds", dataset, "--no-log"], root, env=snapshot))
    finally:
        if args.keep:
            print(f"project kept in {root}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

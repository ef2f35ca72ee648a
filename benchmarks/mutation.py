"""Mutation testing of the modules whose numbers are reported or decide a split, with their fast tests only.

For each module, mutmut 3 (``pip install mutmut``) makes small changes to its functions (``<`` for ``<=``,
``+ 1``, a dropped argument, a swapped string...) and runs the unit/data tests that cover the changed
function: a mutant no test notices ("survived") is a wrong number the suite would let through. Each
module runs in its own scratch copy of ``src/`` and ``tests/`` (``--workdir``, default ``build/mutation``),
with a ``[tool.mutmut]`` section written there for that module alone, so the working tree is never touched
and another engineer's edits do not disturb the run. Prints per module the mutation score (killed +
timeouts over the mutants checked; "no tests" counts as surviving) and every surviving mutant's diff.
About 2-15 minutes per module on 2 cores.

    python benchmarks/mutation.py [--modules evaluation operating_point ...] [--max-children 2]
                                  [--timeout MINUTES] [--workdir DIR] [--json FILE] [--no-diffs]
                                  [--tests-at REV]  (e.g. HEAD: the score before uncommitted test changes)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# module -> (files mutated, the fast tests that check them)
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "evaluation": (["src/mobiledx/evaluation/classification.py", "src/mobiledx/evaluation/intervals.py"],
                   ["tests/unit/test_evaluation.py"]),
    "operating_point": (["src/mobiledx/evaluation/operating_point.py"], ["tests/unit/test_operating_point.py"]),
    "splits": (["src/mobiledx/preparation/splits.py"], ["tests/unit/test_splits.py", "tests/unit/test_crossval.py"]),
    "fields": (["src/mobiledx/data/fields.py"], ["tests/data/test_honest_inputs.py", "tests/data/test_adapters.py",
                                                  "tests/data/test_adapter_properties.py"]),
    "ingest": (["src/mobiledx/data/intake.py"], ["tests/data/test_ingest.py", "tests/data/test_partial_download.py",
                                                  "tests/data/test_download_quirks.py"]),
    "adapters": (["src/mobiledx/data/adapters/*.py"], ["tests/data/test_adapters.py",
                                                       "tests/data/test_adapter_properties.py",
                                                       "tests/data/test_real_layouts.py",
                                                       "tests/data/test_isic_sources.py"]),
}
KILLED = ("killed", "timeout", "caught by type check", "segfault")
NOT_COUNTED = ("skipped", "not checked", "check was interrupted by user")


def mutmut_section(files: list[str], tests: list[str]) -> str:
    """The ``[tool.mutmut]`` table for one module (mutmut 3.x keys: ``source_paths``, ``only_mutate``,
    ``pytest_add_cli_args_test_selection``)."""
    return "\n".join([
        "", "[tool.mutmut]",
        'source_paths = ["src"]',
        f"only_mutate = {json.dumps(files)}",
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q"]',
        "timeout_multiplier = 5.0", "",
    ])


def scratch_copy(workdir: Path, files: list[str], tests: list[str], tests_at: str | None = None) -> None:
    """``src/``, ``tests/`` and ``pyproject.toml`` (its own ``[tool.mutmut]`` replaced by this module's); with
    ``tests_at``, the module's test files as they were at that git revision (to compare scores before and after
    a change to the tests)."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "src", workdir / "src", ignore=ignore)
    shutil.copytree(ROOT / "tests", workdir / "tests", ignore=ignore)
    pyproject = (ROOT / "pyproject.toml").read_text()
    pyproject = re.sub(r"\n\[tool\.mutmut\]\n(?:(?!\n\[).)*", "\n", pyproject, flags=re.S)
    (workdir / "pyproject.toml").write_text(pyproject + mutmut_section(files, tests))
    if tests_at:
        for test in tests:
            old = subprocess.run(["git", "show", f"{tests_at}:{test}"], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout
            (workdir / test).write_text(old)


def mutmut(workdir: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=workdir, capture_output=True, text=True,
                          timeout=timeout)


def statuses(workdir: Path) -> dict[str, str]:
    """``{mutant: status}`` as ``mutmut results --all true`` lists them."""
    listing = mutmut(workdir, "results", "--all", "true").stdout
    return {name.strip(): status.strip() for name, status in
            (line.rsplit(": ", 1) for line in listing.splitlines() if ": " in line)}


def score(found: dict[str, str]) -> dict:
    counted = {name: status for name, status in found.items() if status not in NOT_COUNTED}
    killed = sum(status in KILLED for status in counted.values())
    survivors = sorted(name for name, status in counted.items() if status not in KILLED)
    return {"mutants": len(found), "checked": len(counted), "killed": killed,
            "score": killed / len(counted) if counted else None, "survivors": survivors,
            "statuses": {status: list(found.values()).count(status) for status in sorted(set(found.values()))}}


def run_module(name: str, workdir: Path, max_children: int, timeout_min: float, diffs: bool,
               tests_at: str | None = None) -> dict:
    files, tests = MODULES[name]
    folder = workdir / name
    scratch_copy(folder, files, tests, tests_at)
    start = time.monotonic()
    try:
        done = mutmut(folder, "run", "--max-children", str(max_children), timeout=timeout_min * 60)
        finished = done.returncode == 0
        log = done.stdout + done.stderr
    except subprocess.TimeoutExpired as stopped:
        finished, log = False, f"stopped after {timeout_min:g} min: {stopped.stdout or ''}"
    result = {"module": name, "files": files, "tests": tests, "finished": finished,
              "minutes": round((time.monotonic() - start) / 60, 1), **score(statuses(folder))}
    if not finished:
        result["log_tail"] = str(log)[-2000:]
    if diffs:
        result["diffs"] = {mutant: mutmut(folder, "show", mutant).stdout for mutant in result["survivors"]}
    return result


def report(result: dict) -> None:
    figure = "n/a" if result["score"] is None else f"{result['score']:.1%}"
    state = "" if result["finished"] else " (INCOMPLETE: " + result.get("log_tail", "")[-300:] + ")"
    print(f"\n== {result['module']}: mutation score {figure} ({result['killed']}/{result['checked']} killed; "
          f"{result['statuses']}) in {result['minutes']} min{state}", flush=True)
    for mutant in result["survivors"]:
        print(f"  survived: {mutant}")
        diff = result.get("diffs", {}).get(mutant, "")
        changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
        for line in changed:
            print(f"      {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", nargs="+", choices=sorted(MODULES), default=list(MODULES))
    parser.add_argument("--max-children", type=int, default=2, help="parallel mutant runs (default: 2 = the cores)")
    parser.add_argument("--timeout", type=float, default=25.0, help="minutes per module before it is stopped")
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "mutation")
    parser.add_argument("--json", type=Path, help="write the results (scores, survivors and their diffs) here")
    parser.add_argument("--tests-at", metavar="REV", help="use the modules' test files as of this git revision")
    parser.add_argument("--no-diffs", dest="diffs", action="store_false", help="list survivors without their diffs")
    args = parser.parse_args(argv)

    results = []
    for name in args.modules:
        print(f"{name}: mutating {', '.join(MODULES[name][0])} against {', '.join(MODULES[name][1])}", flush=True)
        results.append(run_module(name, args.workdir, args.max_children, args.timeout, args.diffs, args.tests_at))
        report(results[-1])
    print("\nmodule            score   killed/checked  survived  minutes")
    for result in results:
        figure = "  n/a" if result["score"] is None else f"{result['score']:6.1%}"
        print(f"{result['module']:<16} {figure}   {result['killed']:>5}/{result['checked']:<7}  "
              f"{len(result['survivors']):>8}  {result['minutes']:>7}{'' if result['finished'] else '  incomplete'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(result["finished"] for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())

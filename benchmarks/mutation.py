"""Mutation testing of the modules whose numbers are reported or decide a split, with their fast tests only.

For each module, mutmut 3 (``pip install mutmut``) makes small changes to its functions (``<`` for ``<=``,
``+ 1``, a dropped argument, a swapped string...) and runs the unit/data tests that cover the changed
function: a mutant no test notices ("survived") is a wrong number the suite would let through. Each
module runs in its own scratch copy of ``src/`` and ``tests/`` (``--workdir``, default ``build/mutation``),
with a ``[tool.mutmut]`` section written there for that module alone, so the working tree is never touched
and another engineer's edits do not disturb the run. Prints per module the mutation score (killed +
timeouts over the mutants checked; "no tests" counts as surviving; a timeout is run again alone before it
counts; the mutants named in ``EQUIVALENT``, which cannot change behaviour, are left out and listed with the
reason) and every surviving mutant's diff.
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
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# module -> (files mutated, the fast tests that check them)
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "evaluation": (["src/mobiledx/evaluation/classification.py", "src/mobiledx/evaluation/intervals.py"],
                   ["tests/unit/test_evaluation.py"]),
    "operating_point": (["src/mobiledx/evaluation/operating_point.py"], ["tests/unit/test_operating_point.py"]),
    "splits": (["src/mobiledx/preparation/splits.py"], ["tests/unit/test_splits.py", "tests/unit/test_crossval.py"]),
    "fields": (["src/mobiledx/data/fields.py"], ["tests/data/test_field_conversion.py",
                                                  "tests/data/test_honest_inputs.py", "tests/data/test_adapters.py",
                                                  "tests/data/test_adapter_properties.py"]),
    "ingest": (["src/mobiledx/data/intake.py"], ["tests/data/test_ingest_exact.py", "tests/data/test_scan_process.py",
                                                  "tests/data/test_ingest.py", "tests/data/test_partial_download.py",
                                                  "tests/data/test_download_quirks.py",
                                                  "tests/data/test_honest_inputs.py",
                                                  "tests/data/test_near_duplicate_ingest.py",
                                                  "tests/data/test_real_layouts.py",
                                                  "tests/data/test_isic_sources.py"]),
    "adapters": (["src/mobiledx/data/adapters/*.py"], ["tests/data/test_adapters.py",
                                                       "tests/data/test_adapter_properties.py",
                                                       "tests/data/test_real_layouts.py",
                                                       "tests/data/test_isic_sources.py",
                                                       "tests/data/test_download_quirks.py",
                                                       "tests/data/test_honest_inputs.py"]),
}
# Appended to the scratch copy's tests/conftest.py. mutmut picks the tests to run against a mutant by the
# functions each test reached, recorded in the test process; ingest scans in a forked child (to give its memory
# back), whose hits are lost, so the adapters' and the field conversion's mutants had no tests ("no tests" =
# survived). In the harness the scan runs in the test process: the same function, only not forked. Tests of the
# forked scan itself (the process, the pipe, errors crossing it) ask for it by requesting a ``forked_scan`` fixture.
SCAN_IN_PROCESS = '''

@pytest.fixture(autouse=True)
def _scan_in_the_test_process(request, monkeypatch):
    if "forked_scan" in request.fixturenames:
        return
    from mobiledx.data import intake

    monkeypatch.setattr(intake, "_scan_apart", intake._scan)
'''
# Mutants that cannot change behaviour, left out of the score and listed in the report with why: name ->
# (the mutated line as ``mutmut show`` prints it, the reason). mutmut numbers a function's mutants in order, so an
# edit to the function renumbers them: an entry whose mutant no longer makes that change is not left out, and the
# report names it as stale (look again at that function's survivors).
def _same(reason: str, prefix: str, changes: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Entries of :data:`EQUIVALENT` that share one reason: ``{name after prefix: mutated line}``."""
    return {prefix + name: (line, reason) for name, line in changes.items()}


_INTAKE = "mobiledx.data.intake.x_"
_INDEX_COLUMN = ("reset_index keeps the old index as an 'index' column, which no output carries: decoding reads "
                 "DECODE_COLUMNS, the manifest MANIFEST_COLUMNS")
EQUIVALENT: dict[str, tuple[str, str]] = {
    "mobiledx.data.fields.x_convert_fields__mutmut_67": (
        'converted["age"] = converted["age"].astype(None)',
        "pandas reads the dtype None as NumPy does, as float64: astype(None) is astype(float)"),
    # --- intake ---
    **_same("pairs[0] holds every content code, so the bincount covers them all; minlength only pads zeros that "
            "[codes] never reads, and codes is never empty (a scan with no records stops before)", _INTAKE, {
                "_conflicting__mutmut_13": "return (np.bincount(pairs[0], ) > 1)[codes]",
                "_conflicting__mutmut_16": "return (np.bincount(pairs[0], minlength=codes.max(initial=None) + 1) > "
                                           "1)[codes]",
                "_conflicting__mutmut_17": "return (np.bincount(pairs[0], minlength=codes.max(initial=+1) + 1) > "
                                           "1)[codes]",
                "_conflicting__mutmut_18": "return (np.bincount(pairs[0], minlength=codes.max(initial=-2) + 1) > "
                                           "1)[codes]",
                "_conflicting__mutmut_19": "return (np.bincount(pairs[0], minlength=codes.max(initial=-1) + 2) > "
                                           "1)[codes]"}),
    **_same("copies_of is read only at codes[candidates], which bincount(codes[candidates]) covers; minlength only "
            "pads zeros, and codes is never empty", _INTAKE, {
                "_quarantine_duplicates__mutmut_7": "copies_of = np.bincount(codes[candidates], )",
                "_quarantine_duplicates__mutmut_9": "copies_of = np.bincount(codes[candidates], "
                                                    "minlength=codes.max(initial=None) + 1)",
                "_quarantine_duplicates__mutmut_10": "copies_of = np.bincount(codes[candidates], "
                                                     "minlength=codes.max(initial=+1) + 1)",
                "_quarantine_duplicates__mutmut_11": "copies_of = np.bincount(codes[candidates], "
                                                     "minlength=codes.max(initial=-2) + 1)",
                "_quarantine_duplicates__mutmut_12": "copies_of = np.bincount(codes[candidates], "
                                                     "minlength=codes.max(initial=-1) + 2)"}),
    **_same("single copies become candidates too, but a group of one copy is skipped (one label, position 0): "
            "nothing more is refused", _INTAKE, {
                "_quarantine_duplicates__mutmut_14": "repeated = candidates[copies_of[codes[candidates]] >= 1]"}),
    **_same("pandas takes groupby(sort=None) as not sorting, the same as sort=False", _INTAKE, {
        "_quarantine_duplicates__mutmut_25": "for _, copies in copies_frame.groupby(codes[repeated], sort=None):"}),
    **_same("np.unique's inverse of the 1-D digest column is 1-D already: reshape(None) and reshape(-2) leave it as "
            "reshape(-1) does", _INTAKE, {
                "_content_codes__mutmut_25": "return table, codes.reshape(None), np.sort(first_rows)",
                "_content_codes__mutmut_27": "return table, codes.reshape(-2), np.sort(first_rows)"}),
    **_same("Arrow reads len(table) + 1 offsets; the longer arange starts with the same ones", _INTAKE, {
        "_hex_digests__mutmut_36": "offsets = np.arange(0, 65 * (len(table) + 1), 64, dtype=np.int32)",
        "_hex_digests__mutmut_38": "offsets = np.arange(0, 64 * (len(table) + 2), 64, dtype=np.int32)"}),
    **_same("the chunk is a pa.string() array already: the chunked array's type is pa.string(), given or not",
            _INTAKE, {
                "_hex_digests__mutmut_55": "return pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([column], "
                                           "None), dtype=pd.StringDtype(",
                "_hex_digests__mutmut_57": "return pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([column], "
                                           "), dtype=pd.StringDtype("}),
    **_same("with pyarrow installed (a dependency), pandas' default string storage is pyarrow: the same dtype, str",
            _INTAKE, {"_hex_digests__mutmut_58": "None, na_value=np.nan)))",
                      "_hex_digests__mutmut_60": "na_value=np.nan)))"}),
    **_same("only the order a torn lesion's rows are collected in: _scan sorts the refused rows by position",
            _INTAKE, {
                "_lesion_label_conflicts__mutmut_19": 'for lesion, rows in records[has_lesion & records["lesion_id"]'
                                                      '.isin(torn)].groupby("lesion_id", sort=None):',
                "_lesion_label_conflicts__mutmut_21": 'for lesion, rows in records[has_lesion & records["lesion_id"]'
                                                      '.isin(torn)].groupby("lesion_id", ):',
                "_lesion_label_conflicts__mutmut_28": 'for lesion, rows in records[has_lesion & records["lesion_id"]'
                                                      '.isin(torn)].groupby("lesion_id", sort=False):'}),
    **_same("flush only decides when the line leaves the buffer, not what is printed", _INTAKE, {
        "_near_duplicates__mutmut_14": "flush=None)", "_near_duplicates__mutmut_16": ")",
        "_near_duplicates__mutmut_18": "flush=False)"}),
    **_same("near.dropped and near.reasons are built together, one reason per dropped row: zip's strict check never "
            "fires", _INTAKE, {
                "_near_duplicates__mutmut_36": '"reason": reason} for row, reason in zip(near.dropped, near.reasons, '
                                               'strict=None)]',
                "_near_duplicates__mutmut_39": '"reason": reason} for row, reason in zip(near.dropped, near.reasons, '
                                               ')]',
                "_near_duplicates__mutmut_40": '"reason": reason} for row, reason in zip(near.dropped, near.reasons, '
                                               'strict=False)]'}),
    **_same("the rewrite's batch size: the same rows in the same order, another memory peak", _INTAKE, {
        "_keep_cache_rows__mutmut_1": "def _keep_cache_rows(images_path: Path, rows: np.ndarray, batch: int = 257) "
                                      "-> None:"}),
    **_same("reuses fewer (or none) of the images' content hashes: those files are hashed here instead, with the same "
            "SHA-256 over the same bytes (slower, the same digest)", _INTAKE, {
                "_raw_hash__mutmut_13": "known = pd.Series(None, index=paths.to_numpy())",
                "_raw_hash__mutmut_14": "known = pd.Series(hashes.to_numpy(), index=None)",
                "_raw_hash__mutmut_15": "known = pd.Series(index=paths.to_numpy())",
                "_raw_hash__mutmut_16": "known = pd.Series(hashes.to_numpy(), )",
                "_raw_hash__mutmut_19": 'known = known[known.index.duplicated(keep="last")].reindex(files.to_numpy())',
                "_raw_hash__mutmut_20": "known = known[~known.index.duplicated(keep=None)].reindex(files.to_numpy())",
                "_raw_hash__mutmut_21": 'known = known[~known.index.duplicated(keep="XXlastXX")].reindex('
                                        'files.to_numpy())',
                "_raw_hash__mutmut_22": 'known = known[~known.index.duplicated(keep="LAST")].reindex('
                                        'files.to_numpy())'}),
    **_same("a list of str: pandas infers the str dtype anyway, and an empty list gives an empty Series that filters "
            "and zips the same", _INTAKE, {
                "_raw_hash__mutmut_3": "files = pd.Series(dataset_files(raw_dir), dtype=None)",
                "_raw_hash__mutmut_5": "files = pd.Series(dataset_files(raw_dir), )"}),
    **_same("known is files reindexed: the two always have the same length, zip's strict check never fires", _INTAKE, {
        "_raw_hash__mutmut_26": "for relative, file_hash in zip(files, known, strict=None):",
        "_raw_hash__mutmut_29": "for relative, file_hash in zip(files, known, ):",
        "_raw_hash__mutmut_30": "for relative, file_hash in zip(files, known, strict=False):"}),
    **_same("the size and mode of an array that cannot be read are never read: its rows are refused as unreadable",
            _INTAKE, {"_resize_one__mutmut_9": 'return None, str(error), (1, 0), ""',
                      "_resize_one__mutmut_10": 'return None, str(error), (0, 1), ""',
                      "_resize_one__mutmut_11": 'return None, str(error), (0, 0), "XXXX"'}),
    **_same(_INDEX_COLUMN, _INTAKE, {
        "_scan__mutmut_12": "records, report = convert_fields(found.records.reset_index(drop=None))",
        "_scan__mutmut_13": "records, report = convert_fields(found.records.reset_index(drop=False))",
        "_scan__mutmut_36": "records = records.drop(index=list(refused)).reset_index(drop=None)",
        "_scan__mutmut_39": "records = records.drop(index=list(refused)).reset_index(drop=False)",
        "_drop_escaping_paths__mutmut_28": "return records[inside].reset_index(drop=None), escaping",
        "_drop_escaping_paths__mutmut_29": "return records[inside].reset_index(drop=False), escaping",
        "ingest__mutmut_154": "manifest = records[keep].reset_index(drop=None)[MANIFEST_COLUMNS]",
        "ingest__mutmut_155": "manifest = records[keep].reset_index(drop=False)[MANIFEST_COLUMNS]"}),
    **_same("the escaping rows are read by column name: itertuples with its index (or index=None, false) gives the "
            "same image_id and path", _INTAKE, {
                "_drop_escaping_paths__mutmut_25": "for row in records[~inside].itertuples(index=None)",
                "_drop_escaping_paths__mutmut_27": "for row in records[~inside].itertuples(index=True)"}),
    **_same("the scan lets go of the adapter's table either way; nothing reads found.records afterwards", _INTAKE, {
        "_scan__mutmut_14": 'found.records = ""'}),
    **_same("pandas reads to_dict's orient case-insensitively", _INTAKE, {
        "_scan__mutmut_21": 'quarantine_rows = list(found.quarantine.to_dict("RECORDS"))'}),
    **_same("an adapter without the arrays attribute scans apart with the default False or None alike", _INTAKE, {
        "_scan_apart__mutmut_4": 'if getattr(adapter, "arrays", None) or "fork" not in '
                                 'multiprocessing.get_all_start_methods():'}),
    **_same("get_context(None) is the default context: fork, on Linux under Python 3.11 (the project's platform; "
            "nothing sets another start method)", _INTAKE, {
                "_scan_apart__mutmut_25": "context = multiprocessing.get_context(None)"}),
    **_same("a two-way pipe carries the scan process's one message as a one-way pipe does", _INTAKE, {
        "_scan_apart__mutmut_29": "receiving, sending = context.Pipe(duplex=None)",
        "_scan_apart__mutmut_30": "receiving, sending = context.Pipe(duplex=True)"}),
    **_same("written.rows is set from the cache's row count before anything reads it", _INTAKE, {
        "_write_cache__mutmut_6": "written = _Written(np.zeros((len(decode_rows), 2), np.int32), {}, {}, Counter(), "
                                  "None)",
        "_write_cache__mutmut_17": "written = _Written(np.zeros((len(decode_rows), 2), np.int32), {}, {}, Counter(), "
                                   "1)"}),
    **_same("fallback[0] is read only when grouping by patient", _INTAKE, {
        "assign_groups__mutmut_92": "fallback = 1, int((~has_lesion).sum())",
        "assign_groups__mutmut_96": "groups, fallback = image.copy(), (1, 0)"}),
    **_same("np.isin compares values: the refused content codes as floats match the same rows; count only presizes "
            "the array", _INTAKE, {
                "ingest__mutmut_118": "refused_rows = np.flatnonzero(np.isin(codes, np.fromiter(written.refusals, "
                                      "None, len(written.refusals))))",
                "ingest__mutmut_122": "refused_rows = np.flatnonzero(np.isin(codes, np.fromiter(written.refusals, "
                                      "np.int64, )))"}),
    **_same("NumPy stores None in a bool array as False", _INTAKE, {
        "ingest__mutmut_140": "readable[refused_rows] = None", "ingest__mutmut_151": "keep[duplicates] = None"}),
    **_same("the cache file always exists there (NpyWriter has written it, with no rows): missing_ok never matters",
            _INTAKE, {"ingest__mutmut_156": "images_path.unlink(missing_ok=None)",
                      "ingest__mutmut_157": "images_path.unlink(missing_ok=False)"}),
    **_same("a check that cannot fail (the cache holds one row per kept content code, the manifest's row count): "
            "only its message changes", _INTAKE, {"ingest__mutmut_165": "raise RuntimeError(None)"}),
    **_same("only the name of ingest's temporary records table, which ingest alone creates, reads and deletes, by "
            "the path mkstemp returns", _INTAKE, {
                "ingest__mutmut_22": 'handle, whole_table = tempfile.mkstemp(prefix=None, suffix=".arrow", '
                                     'dir=images_path.parent)',
                "ingest__mutmut_23": 'handle, whole_table = tempfile.mkstemp(prefix=".records-", suffix=None, '
                                     'dir=images_path.parent)',
                "ingest__mutmut_25": 'handle, whole_table = tempfile.mkstemp(suffix=".arrow", dir=images_path.parent)',
                "ingest__mutmut_26": 'handle, whole_table = tempfile.mkstemp(prefix=".records-", '
                                     'dir=images_path.parent)',
                "ingest__mutmut_28": 'handle, whole_table = tempfile.mkstemp(prefix="XX.records-XX", suffix=".arrow", '
                                     'dir=images_path.parent)',
                "ingest__mutmut_29": 'handle, whole_table = tempfile.mkstemp(prefix=".RECORDS-", suffix=".arrow", '
                                     'dir=images_path.parent)',
                "ingest__mutmut_30": 'handle, whole_table = tempfile.mkstemp(prefix=".records-", suffix="XX.arrowXX", '
                                     'dir=images_path.parent)',
                "ingest__mutmut_31": 'handle, whole_table = tempfile.mkstemp(prefix=".records-", suffix=".ARROW", '
                                     'dir=images_path.parent)'}),
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
        "timeout_multiplier = 5.0", "timeout_constant = 5.0", "",
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
    conftest = workdir / "tests" / "conftest.py"
    conftest.write_text(conftest.read_text() + SCAN_IN_PROCESS)
    if tests_at:
        for test in tests:
            old = subprocess.run(["git", "show", f"{tests_at}:{test}"], cwd=ROOT, capture_output=True, text=True)
            # a test file added since: none of its tests existed then (an empty module keeps the selection valid)
            (workdir / test).write_text(old.stdout if old.returncode == 0 else f'"""Not in {tests_at}."""\n')


def mutmut(workdir: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=workdir, capture_output=True, text=True,
                          timeout=timeout)


def statuses(workdir: Path) -> dict[str, str]:
    """``{mutant: status}`` as ``mutmut results --all true`` lists them."""
    listing = mutmut(workdir, "results", "--all", "true").stdout
    return {name.strip(): status.strip() for name, status in
            (line.rsplit(": ", 1) for line in listing.splitlines() if ": " in line)}


def score(found: dict[str, str], equivalent: Iterable[str] = ()) -> dict:
    """Killed over checked, the ``equivalent`` mutants (confirmed by :func:`confirmed_equivalents`) left out."""
    equivalent = set(equivalent)
    counted = {name: status for name, status in found.items()
               if status not in NOT_COUNTED and name not in equivalent}
    killed = sum(status in KILLED for status in counted.values())
    survivors = sorted(name for name, status in counted.items() if status not in KILLED)
    return {"mutants": len(found), "checked": len(counted), "killed": killed,
            "score": killed / len(counted) if counted else None, "survivors": survivors,
            "equivalent": {name: EQUIVALENT[name][1] for name in sorted(equivalent & set(found))},
            "statuses": {status: list(found.values()).count(status) for status in sorted(set(found.values()))}}


def changed_lines(diff: str) -> list[str]:
    """The ``+`` / ``-`` lines of a mutant's diff, without the file header."""
    return [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def confirmed_equivalents(workdir: Path, found: dict[str, str]) -> tuple[list[str], list[str]]:
    """The :data:`EQUIVALENT` mutants of this run that still make the change recorded, and the stale entries
    (their mutant now changes something else)."""
    confirmed, stale = [], []
    for name, (line, _) in sorted(EQUIVALENT.items()):
        if name not in found:
            continue
        added = [changed[1:].strip() for changed in changed_lines(mutmut(workdir, "show", name).stdout)
                 if changed.startswith("+")]
        (confirmed if line.strip() in added else stale).append(name)
    return confirmed, stale


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
    found = statuses(folder)
    rechecked = {}
    left = timeout_min * 60 - (time.monotonic() - start)
    timeouts = sorted(mutant for mutant, status in found.items() if status == "timeout" and mutant not in EQUIVALENT)
    if finished and timeouts and left > 60:
        # A timeout is a wall-clock limit of a few times the tests' own time: with every core busy, a mutant the
        # tests do not notice can run past it and pass for killed. Each is run again, alone; what it is then counts.
        try:
            mutmut(folder, "run", "--max-children", "1", *timeouts, timeout=left)
        except subprocess.TimeoutExpired:
            pass
        found = statuses(folder)
        rechecked = {mutant: found[mutant] for mutant in timeouts}
    equivalent, stale = confirmed_equivalents(folder, found)
    result = {"module": name, "files": files, "tests": tests, "finished": finished,
              "minutes": round((time.monotonic() - start) / 60, 1), **score(found, equivalent),
              "stale_equivalents": stale, "timeouts_rechecked": rechecked}
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
    rechecked = result.get("timeouts_rechecked", {})
    if rechecked:
        print(f"  timeouts run again alone: {len(rechecked)}, still timing out: "
              f"{sum(status == 'timeout' for status in rechecked.values())}")
    for mutant, reason in result.get("equivalent", {}).items():
        print(f"  equivalent, not counted: {mutant}: {reason}")
    for mutant in result.get("stale_equivalents", []):
        print(f"  STALE exclusion (counted; its mutant changed, see EQUIVALENT): {mutant}")
    for mutant in result["survivors"]:
        print(f"  survived: {mutant}")
        for line in changed_lines(result.get("diffs", {}).get(mutant, "")):
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
    print("\nmodule            score   killed/checked  survived  equivalent  minutes")
    for result in results:
        figure = "  n/a" if result["score"] is None else f"{result['score']:6.1%}"
        print(f"{result['module']:<16} {figure}   {result['killed']:>5}/{result['checked']:<7}  "
              f"{len(result['survivors']):>8}  {len(result['equivalent']):>10}  {result['minutes']:>7}"
              f"{'' if result['finished'] else '  incomplete'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(result["finished"] for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())

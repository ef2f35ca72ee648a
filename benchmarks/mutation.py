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
                                  [--rescore]  (no run: the last run's statuses against today's EQUIVALENT)
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
    "adapters": (["src/mobiledx/data/adapters/*.py"], ["tests/data/test_adapter_details.py",
                                                       "tests/data/test_registry_helpers.py",
                                                       "tests/data/test_metadata_tables.py",
                                                       "tests/data/test_dataset_files.py",
                                                       "tests/data/test_adapters.py",
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
_ADAPTERS = "mobiledx.data.adapters."
EQUIVALENT: dict[str, tuple[str, str]] = {
    "mobiledx.data.fields.x_convert_fields__mutmut_67": (
        'converted["age"] = converted["age"].astype(None)',
        "pandas reads the dtype None as NumPy does, as float64: astype(None) is astype(float)"),
    # --- evaluation, operating point ---
    "mobiledx.evaluation.classification.x_classification_metrics__mutmut_85": (
        "majority = np.bincount(y_true, ).argmax()",
        "padding the counts with zeros for classes after the last one present cannot move argmax; an empty y_true "
        "is refused by scikit-learn before this line"),
    **_same("NumPy reads any negative size in reshape as 'infer this dimension': reshape(-2) is reshape(-1)",
            "mobiledx.evaluation.operating_point.x_", {
                "_as_arrays__mutmut_5": "truth = np.asarray(y_true).reshape(-2)",
                "_as_arrays__mutmut_13": "values = np.asarray(scores, dtype=float).reshape(-2)"}),
    **_same('side="left" is searchsorted\'s default', "mobiledx.evaluation.operating_point.x_", {
        "choose_threshold__mutmut_38": "tp = pos_scores.size - np.searchsorted(pos_scores, candidates, )",
        "choose_threshold__mutmut_61": "tn = np.searchsorted(neg_scores, candidates, )"}),
    # --- splits ---
    **_same("'train' fills a fixed-width text array ('<U5') instead of an object one: 'test' and 'val' fit in it, "
            "and the split column pandas makes of either is the same str column", "mobiledx.preparation.splits.x_", {
                "split_manifest__mutmut_10": 'split = np.full(len(manifest), "train", dtype=None)',
                "split_manifest__mutmut_13": 'split = np.full(len(manifest), "train", )'}),
    "mobiledx.preparation.splits.x_split_manifest__mutmut_67": (
        "val = _hold_out(labels[rest], groups[rest], min(val_share, 0.5), seed + 2)",
        "another seed for the validation hold-out than the test one gives another, equally valid split; what the "
        "seed must do (the same seed, the same split; another seed, another split) is tested"),
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
    # --- adapters ---
    **_same("lesion_id and patient_id that a record lacks are filled with '' by records_frame: the value it gave",
            _ADAPTERS, {
        'folder.x_scan_class_tree__mutmut_139':
            ('records.append({"image_id": image_id, "path": relative, "label": label, "XXlesion_idXX": "", '
             '"patient_id": "",'),
        'folder.x_scan_class_tree__mutmut_140':
            ('records.append({"image_id": image_id, "path": relative, "label": label, "LESION_ID": "", '
             '"patient_id": "",'),
        'folder.x_scan_class_tree__mutmut_142':
            ('records.append({"image_id": image_id, "path": relative, "label": label, "lesion_id": "", '
             '"XXpatient_idXX": "",'),
        'folder.x_scan_class_tree__mutmut_143':
            ('records.append({"image_id": image_id, "path": relative, "label": label, "lesion_id": "", '
             '"PATIENT_ID": "",'),
    }),
    **_same(("target reaches its reader only as 'benign' or 'malignant': the column is mapped to those or '' "
             'first, and empty values are not read'),
            _ADAPTERS, {
        'isic_archive.x__by_target__mutmut_2':
            'return value if (value in ISIC2020_TARGETS.values()) or True else None',
    }),
    **_same("the two sequences are columns of one table: always of one length, zip's strict check never fires",
            _ADAPTERS, {
        'isic_archive.x__drop_listed_duplicates__mutmut_21': 'strict=None) if a.strip() and b.strip()]',
        'isic_archive.x__drop_listed_duplicates__mutmut_24': ') if a.strip() and b.strip()]',
        'isic_archive.x__drop_listed_duplicates__mutmut_29': 'strict=False) if a.strip() and b.strip()]',
        'registry.x_match_listed_images__mutmut_129':
            'for stem, path in zip(unlisted["stem"], unlisted["path"], strict=None):',
        'registry.x_match_listed_images__mutmut_132': 'for stem, path in zip(unlisted["stem"], unlisted["path"], ):',
        'registry.x_match_listed_images__mutmut_137':
            'for stem, path in zip(unlisted["stem"], unlisted["path"], strict=False):',
        'registry.x_match_listed_images__mutmut_64': 'unreadable[problems], strict=None):',
        'registry.x_match_listed_images__mutmut_69': 'unreadable[problems], ):',
        'registry.x_match_listed_images__mutmut_70': 'unreadable[problems], strict=False):',
    }),
    **_same(('which of two roots stays root only names the component, not its members, which are then ordered by '
             'the listing'),
            _ADAPTERS, {
        'isic_archive.x__duplicate_components__mutmut_17': 'keep, other = sorted((a, b), key=None)',
        'isic_archive.x__duplicate_components__mutmut_19': 'keep, other = sorted((a, b), )',
    }),
    **_same("records_frame turns a site of None into '' (fillna), the value an empty site gives",
            _ADAPTERS, {
        'isic_archive.x__first__mutmut_2': 'return next((row[c] for c in columns if row.get(c, "").strip()), None)',
    }),
    **_same(('where is read only by label_disagreement, which isic2019 (the one caller without where) never '
             'reaches: it passes no readers'),
            _ADAPTERS, {
        'isic_archive.x__labelled_records__mutmut_1': 'where: str = "XXXX") -> list[dict]:',
    }),
    **_same(('an id listed twice is never in found (match_listed_images refuses every listing of it): its rows are'
             ' skipped whichever rows are dropped here'),
            _ADAPTERS, {
        'isic_archive.x__labelled_records__mutmut_10':
            'for row in table.drop_duplicates(keep=False).to_dict("records"):',
        'isic_archive.x__labelled_records__mutmut_11':
            'for row in table.drop_duplicates(id_column, ).to_dict("records"):',
        'isic_archive.x__labelled_records__mutmut_8':
            'for row in table.drop_duplicates(None, keep=False).to_dict("records"):',
    }),
    **_same("pandas reads to_dict's orient case-insensitively",
            _ADAPTERS, {
        'isic_archive.x__labelled_records__mutmut_14':
            'for row in table.drop_duplicates(id_column, keep=False).to_dict("RECORDS"):',
    }),
    **_same('with one reader (or none) label_disagreement finds at most one answer and returns None',
            _ADAPTERS, {
        'isic_archive.x__labelled_records__mutmut_20':
            ('reason = label_disagreement(row, readers, f"its row in {where}") if (len(readers) > 1) or True else '
             'None'),
        'isic_archive.x__labelled_records__mutmut_27':
            'reason = label_disagreement(row, readers, f"its row in {where}") if len(readers) >= 1 else None',
    }),
    **_same("label is set by apply_label_policy before it is read; a refused row's label is never read",
            _ADAPTERS, {
        'isic_archive.x__labelled_records__mutmut_29': 'label = ""',
    }),
    **_same('[-1] is the last path component however many times the path is split',
            _ADAPTERS, {
        'isic_archive.x__name__mutmut_4': 'return relative.rsplit("/", )[-1]',
        'isic_archive.x__name__mutmut_7': 'return relative.rsplit("/", 2)[-1]',
        'registry.x_find_one__mutmut_11': 'if relative.rsplit("/", 2)[-1].lower() == name.lower()]',
        'registry.x_find_one__mutmut_8': 'if relative.rsplit("/", )[-1].lower() == name.lower()]',
        'registry.x_index_images__mutmut_15': 'name = relative.rsplit("/", )[-1]',
        'registry.x_index_images__mutmut_18': 'name = relative.rsplit("/", 2)[-1]',
    }),
    **_same('the label given with a refusal is never read: the row is quarantined before labelling',
            _ADAPTERS, {
        'isic_archive.x__one_hot__mutmut_16':
            'return "XXXX", f"{ISIC2019_GROUND_TRUTH}: {\', \'.join(problems)}: the one-hot row cannot be read"',
        'isic_archive.x__one_hot__mutmut_21':
            'return "XXXX", f"{ISIC2019_GROUND_TRUTH}: not exactly one class marked 1 (one-hot) for this image"',
    }),
    **_same(("'XXXX' is no target either, so the column reads '' as for an empty value, and it is not None "
             '(refused) either'),
            _ADAPTERS, {
        'isic_archive.x__target__mutmut_3': 'return "XXXX"',
    }),
    **_same(('the head serves to read the header line; one more character changes nothing for a header line '
             'shorter than 64 KiB'),
            _ADAPTERS, {
        'registry.x__choose_delimiter__mutmut_2': 'head = text[:65537]',
    }),
    **_same('codec names are looked up case-insensitively: the same codec',
            _ADAPTERS, {
        'registry.x__decode__mutmut_36': 'encoding, described = "UTF-16-LE", "UTF-16 without a byte-order mark"',
        'registry.x__decode__mutmut_55': 'encoding, described = "UTF-16-BE", "UTF-16 without a byte-order mark"',
        'registry.x__decode__mutmut_64': 'text = raw.decode(encoding or "UTF-8")',
        'registry.x__decode__mutmut_78': 'text = raw.decode("CP1252")',
    }),
    **_same("neither 'Windows-1252' nor None is counted as a 'read as' normalisation (Windows-1252 is said in a note)",
            _ADAPTERS, {
        'registry.x__decode__mutmut_81': 'described = None',
    }),
    **_same(("io.StringIO's default newline is '\\n', which translates nothing on reading: csv sees the same line "
             "endings as with newline=''"),
            _ADAPTERS, {
        'registry.x__first_row__mutmut_8': 'for row in csv.reader(io.StringIO(text, ), delimiter=delimiter):',
        'registry.x__parse_rows__mutmut_9': 'rows = csv.reader(io.StringIO(text, ), delimiter=delimiter)',
    }),
    **_same('the fast parse returns the same frame, or gives up (returns None) and _parse_rows reads the same table',
            _ADAPTERS, {
        'registry.x__parse_fast__mutmut_10': 'skip_blank_lines=True, index_col=None, engine="c")',
        'registry.x__parse_fast__mutmut_11': 'skip_blank_lines=True, index_col=False, engine=None)',
        'registry.x__parse_fast__mutmut_14':
            'frame = pd.read_csv(io.BytesIO(text.encode("utf-8")), sep=delimiter, encoding="utf-8",',
        'registry.x__parse_fast__mutmut_15':
            ('frame = pd.read_csv(io.BytesIO(text.encode("utf-8")), sep=delimiter, header=None, names=range(width '
             '+ EXTRA_FIELDS), dtype=str, keep_default_na=False, na_values=[],'),
        'registry.x__parse_fast__mutmut_16': 'dtype=str, keep_default_na=False, na_values=[],',
        'registry.x__parse_fast__mutmut_18': 'names=range(width + EXTRA_FIELDS), dtype=str, na_values=[],',
        'registry.x__parse_fast__mutmut_19':
            ('names=range(width + EXTRA_FIELDS), dtype=str, keep_default_na=False, skip_blank_lines=True, '
             'index_col=False, engine="c")'),
        'registry.x__parse_fast__mutmut_2': 'frame = pd.read_csv(None, sep=delimiter, header=None, encoding="utf-8",',
        'registry.x__parse_fast__mutmut_20': 'index_col=False, engine="c")',
        'registry.x__parse_fast__mutmut_21': 'skip_blank_lines=True, engine="c")',
        'registry.x__parse_fast__mutmut_22': 'skip_blank_lines=True, index_col=False, )',
        'registry.x__parse_fast__mutmut_26':
            'frame = pd.read_csv(io.BytesIO(text.encode("UTF-8")), sep=delimiter, header=None, encoding="utf-8",',
        'registry.x__parse_fast__mutmut_28':
            'frame = pd.read_csv(io.BytesIO(text.encode("utf-8")), sep=delimiter, header=None, encoding="UTF-8",',
        'registry.x__parse_fast__mutmut_3':
            'frame = pd.read_csv(io.BytesIO(text.encode("utf-8")), sep=None, header=None, encoding="utf-8",',
        'registry.x__parse_fast__mutmut_31':
            'names=range(width + EXTRA_FIELDS), dtype=str, keep_default_na=True, na_values=[],',
        'registry.x__parse_fast__mutmut_32': 'skip_blank_lines=False, index_col=False, engine="c")',
        'registry.x__parse_fast__mutmut_33': 'skip_blank_lines=True, index_col=True, engine="c")',
        'registry.x__parse_fast__mutmut_34': 'skip_blank_lines=True, index_col=False, engine="XXcXX")',
        'registry.x__parse_fast__mutmut_35': 'skip_blank_lines=True, index_col=False, engine="C")',
        'registry.x__parse_fast__mutmut_4':
            'frame = pd.read_csv(io.BytesIO(text.encode("utf-8")), sep=delimiter, header=None, encoding=None,',
        'registry.x__parse_fast__mutmut_43': 'filled = (frame[column] != "XXXX").to_numpy().copy()',
        'registry.x__parse_fast__mutmut_47': 'if column >= width or filled.any():',
        'registry.x__parse_fast__mutmut_5': 'names=None, dtype=str, keep_default_na=False, na_values=[],',
        'registry.x__parse_fast__mutmut_7':
            'names=range(width + EXTRA_FIELDS), dtype=str, keep_default_na=None, na_values=[],',
        'registry.x__parse_fast__mutmut_8':
            'names=range(width + EXTRA_FIELDS), dtype=str, keep_default_na=False, na_values=None,',
        'registry.x__parse_fast__mutmut_9': 'skip_blank_lines=None, index_col=False, engine="c")',
    }),
    **_same('a row of exactly width values has nothing beyond width: any() of nothing is False',
            _ADAPTERS, {
        'registry.x__parse_rows__mutmut_21': 'if len(row) >= width and any(cell.strip() for cell in row[width:]):',
    }),
    **_same(('the cache of parsed maps only saves recomputing; a miss recomputes the same maps (the cache holds '
             'each map, so no other map can take its id while cached)'),
            _ADAPTERS, {
        'registry.x__policy_map__mutmut_1': 'cached = None',
        'registry.x__policy_map__mutmut_2': 'cached = _MAPS.get(None)',
        'registry.x__policy_map__mutmut_3': 'cached = _MAPS.get(id(None))',
        'registry.x__policy_map__mutmut_44': '_MAPS[id(policy.map)] = None',
        'registry.x__policy_map__mutmut_45': '_MAPS[id(None)] = (policy.map, plain, qualified, near)',
        'registry.x__policy_map__mutmut_6': 'if cached is not None and cached[1] is policy.map:',
        'registry.x__policy_map__mutmut_7': 'if cached is not None and cached[0] is not policy.map:',
    }),
    **_same('the values are text already: pandas infers the same str column, and an empty column stays empty',
            _ADAPTERS, {
        'registry.x_index_images__mutmut_77':
            'images = pd.DataFrame({"stem": pd.Series(stems, dtype=None), "path": pd.Series(paths, dtype="str")})',
        'registry.x_index_images__mutmut_79':
            'images = pd.DataFrame({"stem": pd.Series(stems, ), "path": pd.Series(paths, dtype="str")})',
        'registry.x_index_images__mutmut_85':
            'images = pd.DataFrame({"stem": pd.Series(stems, dtype="str"), "path": pd.Series(paths, dtype=None)})',
        'registry.x_index_images__mutmut_87':
            'images = pd.DataFrame({"stem": pd.Series(stems, dtype="str"), "path": pd.Series(paths, )})',
        'registry.x_listed_without_file__mutmut_3': 'listed_ids = pd.Series(listed_ids, dtype=None)',
        'registry.x_listed_without_file__mutmut_5': 'listed_ids = pd.Series(listed_ids, )',
        'registry.x_match_listed_images__mutmut_11':
            ('listed_ids = pd.concat([pd.Series(listed_ids, dtype=None), pd.Series(extra, dtype="str")], '
             'ignore_index=True)'),
        'registry.x_match_listed_images__mutmut_13':
            'listed_ids = pd.concat([pd.Series(listed_ids, ), pd.Series(extra, dtype="str")], ignore_index=True)',
        'registry.x_match_listed_images__mutmut_153': 'dtype=None).reindex(matched)',
        'registry.x_match_listed_images__mutmut_156': ').reindex(matched)',
        'registry.x_match_listed_images__mutmut_17':
            ('listed_ids = pd.concat([pd.Series(listed_ids, dtype="str"), pd.Series(extra, dtype=None)], '
             'ignore_index=True)'),
        'registry.x_match_listed_images__mutmut_19':
            'listed_ids = pd.concat([pd.Series(listed_ids, dtype="str"), pd.Series(extra, )], ignore_index=True)',
    }),
    **_same('every reader answers None for an empty value',
            _ADAPTERS, {
        'registry.x_label_disagreement__mutmut_12': 'answer = read(raw) if (raw) or True else None',
    }),
    **_same('the file counts are only compared with 0 and 1: as floats they compare the same',
            _ADAPTERS, {
        'registry.x_match_listed_images__mutmut_36':
            'file_count = listed_ids.map(images["stem"].value_counts()).fillna(0).astype(None)',
    }),
    **_same(("names are case-folded before the join, so 'XX' cannot come from a name: 'XX XX' separates the words "
             "as uniquely as ' '"),
            _ADAPTERS, {
        'registry.x_name_key__mutmut_17':
            'return "XX XX".join(visible.translate(_LATIN_LOOKALIKES).casefold().split())',
    }),
    **_same('NFC leaves ASCII text as it is',
            _ADAPTERS, {
        'registry.x_nfc__mutmut_1':
            'return text if (text.isascii()) and False else unicodedata.normalize("NFC", text)',
    }),
    **_same("[0] is the text before the first '=' however many times the key is split",
            _ADAPTERS, {
        'registry.x_policy_columns__mutmut_6':
            'others = [nfc(key.split("=", )[0].strip()) for key in policy.map if "=" in key]',
        'registry.x_policy_columns__mutmut_9':
            'others = [nfc(key.split("=", 2)[0].strip()) for key in policy.map if "=" in key]',
    }),
    **_same('pandas takes groupby(sort=None) as not sorting, the same as sort=False',
            _ADAPTERS, {
        'registry.x_read_copies_once__mutmut_10': 'for _, paths in repeated.groupby("stem", sort=None)["path"]:',
    }),
    **_same('filecmp.cmp compares contents unless shallow is true: None is false',
            _ADAPTERS, {
        'registry.x_read_copies_once__mutmut_22': 'if filecmp.cmp(raw_dir / first, raw_dir / other, shallow=None):',
    }),
    **_same(('the same table either way: rows of text give str columns with or without dtype=object, no rows give '
             "the header's empty columns, and ASCII text is left as it is by NFC (nothing counted)"),
            _ADAPTERS, {
        'registry.x_read_table__mutmut_100':
            ('table = pd.DataFrame(data, columns=header, dtype=object).astype(str) if (data) or True else '
             'pd.DataFrame('),
        'registry.x_read_table__mutmut_104':
            'table = pd.DataFrame(data, columns=header, dtype=None).astype(str) if data else pd.DataFrame(',
        'registry.x_read_table__mutmut_107':
            'table = pd.DataFrame(data, columns=header, ).astype(str) if data else pd.DataFrame(',
        'registry.x_read_table__mutmut_109': '{name: pd.Series(dtype=None) for name in header})',
        'registry.x_read_table__mutmut_110':
            'if len(table) or not all(table[name].str.isascii().all() for name in header):',
    }),
    **_same('without the fast parse (or with it failing on a None delimiter) _parse_rows reads the same table',
            _ADAPTERS, {
        'registry.x_read_table__mutmut_67': 'frame = None',
        'registry.x_read_table__mutmut_69': 'frame = _parse_fast(text, None, width)',
    }),
    **_same("the kinds are ordered by sorted() on their counts right after: value_counts' own order is not used",
            _ADAPTERS, {
        'registry.x_refusal_summary__mutmut_10': 'counts = kinds.value_counts(sort=False)',
        'registry.x_refusal_summary__mutmut_9': 'counts = kinds.value_counts(sort=None)',
    }),
    **_same('ch.isprintable() and ch.isascii() already exclude every Cf character',
            _ADAPTERS, {
        'registry.x_shown_name__mutmut_10':
            'escaped = "".join(ch if ch.isprintable() and unicodedata.category(ch) != "XXCfXX" and ch.isascii()',
        'registry.x_shown_name__mutmut_11':
            'escaped = "".join(ch if ch.isprintable() and unicodedata.category(ch) != "cf" and ch.isascii()',
        'registry.x_shown_name__mutmut_12':
            'escaped = "".join(ch if ch.isprintable() and unicodedata.category(ch) != "CF" and ch.isascii()',
    }),
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
               tests_at: str | None = None, rescore: bool = False) -> dict:
    files, tests = MODULES[name]
    folder = workdir / name
    start = time.monotonic()
    if rescore:  # the statuses of the last run in this folder, scored against today's EQUIVALENT
        return _result(name, folder, statuses(folder), 0.0, True, "", {}, diffs)
    scratch_copy(folder, files, tests, tests_at)
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
    return _result(name, folder, found, (time.monotonic() - start) / 60, finished, log, rechecked, diffs)


def _result(name: str, folder: Path, found: dict[str, str], minutes: float, finished: bool, log: str,
            rechecked: dict[str, str], diffs: bool) -> dict:
    files, tests = MODULES[name]
    equivalent, stale = confirmed_equivalents(folder, found)
    result = {"module": name, "files": files, "tests": tests, "finished": finished,
              "minutes": round(minutes, 1), **score(found, equivalent),
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
    parser.add_argument("--rescore", action="store_true",
                        help="run nothing: score the last run in --workdir again (after naming equivalent mutants)")
    args = parser.parse_args(argv)

    results = []
    for name in args.modules:
        print(f"{name}: mutating {', '.join(MODULES[name][0])} against {', '.join(MODULES[name][1])}", flush=True)
        results.append(run_module(name, args.workdir, args.max_children, args.timeout, args.diffs, args.tests_at,
                                  args.rescore))
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

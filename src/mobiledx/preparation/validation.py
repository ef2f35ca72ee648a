"""Validate an ingest manifest with a Great Expectations 1.x suite.

Six in-memory batches are validated, each with its own suite:

* ``manifest``: the manifest itself (schema, nulls, uniqueness, value sets and ranges);
* ``sha256_labels``: one row per duplicated content hash with its number of distinct labels;
* ``lesion_patients``: one row per lesion with a patient id, with its number of patients;
* ``class_counts``: one row per dataset class with its number of images;
* ``quarantine``: one row with the fraction of inputs that ingest quarantined;
* ``near_duplicate_pairs``: one row per near-duplicate pair ingest found, with the groups of its two images.

Each expectation carries a Great Expectations ``severity``: ``critical`` failures fail the
stage, ``warning`` failures are only reported. Every expectation is declared once, as a
:class:`~mobiledx.preparation.rules.Rule`, and evaluated twice: in pandas first (milliseconds, the
verdict the stage prints), then by Great Expectations, imported only then (it takes seconds),
whose results are the record; the two must agree rule by rule.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from mobiledx.data.manifest import LISTED_WITHOUT_FILE, MANIFEST_COLUMNS
from mobiledx.errors import MobiledxError
from mobiledx.io import jsonable
from mobiledx.preparation.rules import (
    MANIFEST_ASSET,
    MAX_EXAMPLES,
    ExpectationOutcome,
    Rule,
    evaluate,
    outcome_name,
)

SEXES = ["male", "female", "unknown"]
MIN_AGE, MAX_AGE = 0.0, 120.0
SOURCE_SPLITS = ["", "train", "val", "test"]
QUARANTINE_LIMIT = "expect_column_values_to_be_between(quarantine.quarantined_fraction)"
MISSING = "(missing)"
MISSING_FILES_POLICIES = ("refuse", "allow")  # validate.missing_files



@dataclass
class ValidationOutcome:
    """Everything the validate stage learned about one manifest."""

    success: bool  # False iff any critical expectation failed
    expectations: list[ExpectationOutcome]
    summary: dict
    ge_results: list[dict]  # raw suite results (ExpectationSuiteValidationResult.to_json_dict)

    def critical_failures(self) -> list[ExpectationOutcome]:
        """The failed critical expectations."""
        return [outcome for outcome in self.expectations if outcome.status == "critical"]

    def warnings(self) -> list[ExpectationOutcome]:
        """The failed warning-only expectations."""
        return [outcome for outcome in self.expectations if outcome.status == "warning"]

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (no NaN) of the outcome, including the raw GE results."""
        return {
            "success": self.success,
            "expectations": [asdict(outcome) for outcome in self.expectations],
            "summary": self.summary,
            "ge_results": self.ge_results,
        }


class DataValidationError(MobiledxError):
    """A manifest failed one or more critical expectations."""

    def __init__(self, message: str, failures: list[ExpectationOutcome]):
        super().__init__(message)
        self.failures = failures


@dataclass
class _Batch:
    """One in-memory batch and the expectations validated against it."""

    name: str
    frame: pd.DataFrame
    index_columns: list[str]  # columns identifying an offending row
    rules: list[Rule]


def validate_manifest(
    manifest: pd.DataFrame,
    classes: list[str],
    quarantine: pd.DataFrame,
    min_images_per_class: int,
    max_quarantined_fraction: float,
    ingest_info: dict | None = None,
    missing_files: str = "refuse",
    on_verdict: Callable[[ValidationOutcome], None] | None = None,
) -> ValidationOutcome:
    """Validate ``manifest`` (and the ingest ``quarantine`` table) with Great Expectations.

    ``classes`` is the dataset's class vocabulary: every label must be one of them and each of
    them needs at least ``min_images_per_class`` images. The quarantined fraction,
    ``len(quarantine) / (len(manifest) + len(quarantine))``, must not exceed
    ``max_quarantined_fraction``. No lesion may belong to two patients. ``ingest_info`` (ingest's
    ``dataset.json``) adds how groups were formed, the normalisations counted, unfit images kept and
    the adapter's notes to the summary. Never raises on bad data; see :func:`raise_for_critical`.

    ``missing_files`` (``validate.missing_files``) decides what images listed without a file (a
    partial download; :func:`count_missing_files`) are: ``refuse`` counts them as quarantined;
    ``allow`` counts them apart, so the fraction is of the refused inputs only, and the summary
    says that the model sees a subset of the collection.
    """
    if missing_files not in MISSING_FILES_POLICIES:
        raise ValueError(f"missing_files must be one of {MISSING_FILES_POLICIES}, got {missing_files!r}")
    n_missing = count_missing_files(quarantine, ingest_info)
    n_quarantined = len(quarantine) - (n_missing if missing_files == "allow" else 0)  # counted toward the limit
    n_inputs = len(manifest) + n_quarantined
    quarantined_fraction = n_quarantined / n_inputs if n_inputs else 0.0

    quarantine_frame = pd.DataFrame(
        {"n_quarantined": [n_quarantined], "n_inputs": [n_inputs], "quarantined_fraction": [quarantined_fraction]}
    )
    batches = _batches(
        manifest, classes, quarantine_frame, min_images_per_class, max_quarantined_fraction,
        missing_apart=missing_files == "allow", near_duplicates=(ingest_info or {}).get("near_duplicates") or {},
    )
    expectations = [evaluate(rule, batch.frame, batch.name, batch.index_columns)
                    for batch in batches for rule in batch.rules]
    summary = {**_summary(manifest, classes, quarantine, quarantined_fraction, ingest_info or {}),
               "missing_files": missing_files, "n_missing_files": n_missing, "n_quarantined_counted": n_quarantined}
    success = not any(outcome.status == "critical" for outcome in expectations)
    if on_verdict is not None:
        on_verdict(ValidationOutcome(success, expectations, summary, ge_results=[]))

    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    import great_expectations as gx

    ge_results = _run(gx, batches)
    recorded = [
        _expectation_outcome(result, batch)
        for batch, suite_result in zip(batches, ge_results)
        for result in suite_result["results"]
    ]
    _require_agreement(expectations, recorded)
    return ValidationOutcome(success, recorded, summary, ge_results)


def _require_agreement(evaluated: list[ExpectationOutcome], recorded: list[ExpectationOutcome]) -> None:
    """Raise if pandas and Great Expectations disagree on any rule (a bug in :mod:`rules`): its verdict,
    count and examples must be equal; where a rule could not be evaluated, both must say so."""
    theirs_by_name = {outcome.name: outcome for outcome in recorded}
    for ours in evaluated:
        theirs = theirs_by_name.pop(ours.name, None)
        if theirs is not None and ours.is_error and theirs.is_error and ours.success == theirs.success:
            continue
        if repr(ours) != repr(theirs):  # repr: 1 and 1.0 are equal, but read differently in a message
            raise RuntimeError(f"mobiledx's pandas evaluation of {ours.name} disagrees with Great Expectations': "
                               f"{ours} != {theirs}; please report this with the manifest")
    if theirs_by_name:
        raise RuntimeError(f"Great Expectations reported rules mobiledx did not evaluate: {sorted(theirs_by_name)}")


def count_missing_files(quarantine: pd.DataFrame, ingest_info: dict | None = None) -> int:
    """How many quarantined inputs are images the metadata lists but no file holds: ingest's count
    (``dataset.json``'s ``n_missing_files``), else the quarantine rows with the adapters' reason for them."""
    if ingest_info and ingest_info.get("n_missing_files") is not None:
        return int(ingest_info["n_missing_files"])
    if "reason" not in quarantine.columns:
        return 0
    return int(quarantine["reason"].astype(str).str.contains(LISTED_WITHOUT_FILE).sum())


def raise_for_critical(outcome: ValidationOutcome, dataset: str) -> None:
    """Raise :class:`DataValidationError` naming every failed critical expectation, with examples."""
    error = critical_error(outcome, dataset)
    if error is not None:
        raise error


def critical_error(outcome: ValidationOutcome, dataset: str) -> DataValidationError | None:
    """The :class:`DataValidationError` naming every failed critical expectation, with examples (None: none failed)."""
    failures = outcome.critical_failures()
    if not failures:
        return None
    lines = [f"Data validation failed for dataset '{dataset}': {len(failures)} critical expectation(s) failed"]
    for failure in failures:
        line = f"- {failure.name}: {failure.detail} ({failure.unexpected_count} unexpected)"
        if failure.examples:
            line += "; examples: " + "; ".join(_format_example(example) for example in failure.examples)
        lines.append(line)
    lines += [f"- note: {note}" for note in outcome.summary.get("notes", [])]
    missing = outcome.summary.get("n_missing_files", 0)
    if missing and outcome.summary.get("missing_files", "refuse") == "refuse" and any(
            failure.name == QUARANTINE_LIMIT for failure in failures):
        lines.append(
            f"- {missing:,} of the {outcome.summary['n_quarantined']:,} quarantined inputs are images listed in the "
            f"metadata without a file (a partial download). Fix: download the missing images (see the note), or, "
            f"to train deliberately on the {outcome.summary['n_images']:,} images present, set "
            f"validate.missing_files: allow in params.yaml (`dvc exp run -S validate.missing_files=allow`): they are "
            f"then counted apart from refused inputs, not toward validate.max_quarantined_fraction, and the model "
            f"card records that the model saw a subset")
    lines.append(f"Fix: correct the raw data (see data/validated/{dataset}/report.md), or the thresholds under "
                 f"validate: in params.yaml")
    return DataValidationError("\n".join(lines), failures)


def _manifest_rules(classes: list[str]) -> list[Rule]:
    """What every manifest row must satisfy: the columns, unique ids, known labels and sexes, ages in range.
    Grouped by column, the order in which Great Expectations reports them."""

    def never_null(column: str) -> Rule:
        return Rule("ExpectColumnValuesToNotBeNull", {"column": column}, f"{column} is never null")

    return [
        Rule("ExpectTableColumnsToMatchSet", {"column_set": MANIFEST_COLUMNS, "exact_match": True},
             f"columns are exactly {', '.join(MANIFEST_COLUMNS)} (any order)"),
        never_null("image_id"),
        Rule("ExpectColumnValuesToBeUnique", {"column": "image_id"}, "image_id is unique"),
        never_null("path"),
        never_null("label"),
        Rule("ExpectColumnValuesToBeInSet", {"column": "label", "value_set": list(classes)},
             f"label is one of the classes {', '.join(classes)}"),
        never_null("group_id"),
        never_null("sha256"),
        Rule("ExpectColumnValuesToBeUnique", {"column": "sha256"},
             "sha256 is unique (duplicate images share a label)", severity="warning"),
        never_null("sex"),
        Rule("ExpectColumnValuesToBeInSet", {"column": "sex", "value_set": SEXES}, f"sex is one of {', '.join(SEXES)}"),
        Rule("ExpectColumnValuesToBeBetween", {"column": "age", "min_value": MIN_AGE, "max_value": MAX_AGE},
             f"age is between {MIN_AGE:g} and {MAX_AGE:g} years inclusive (unknown age allowed)"),
        Rule("ExpectColumnValuesToBeInTypeList", {"column": "age", "type_list": ["float64", "float32"]},
             "age is numeric (float years)"),
        Rule("ExpectColumnValuesToBeInSet", {"column": "source_split", "value_set": SOURCE_SPLITS},
             "source_split is empty or one of train, val, test"),
        Rule("ExpectColumnValuesToNotBeNull", {"column": "site"}, "site is never null", severity="warning"),
    ]


def _batches(
    manifest: pd.DataFrame,
    classes: list[str],
    quarantine_frame: pd.DataFrame,
    min_images_per_class: int,
    max_quarantined_fraction: float,
    missing_apart: bool = False,
    near_duplicates: dict | None = None,
) -> list[_Batch]:
    """The batches to validate and their rules. ``near_duplicates``: ingest's near-duplicate summary
    (``dataset.json``)."""
    conflicts = Rule("ExpectColumnValuesToBeBetween", {"column": "n_labels", "max_value": 1},
                     "images with the same sha256 all have the same label")
    class_minimum = Rule("ExpectColumnValuesToBeBetween", {"column": "count", "min_value": min_images_per_class},
                         f"every class has at least {min_images_per_class} images")
    quarantine_limit = Rule(
        "ExpectColumnValuesToBeBetween",
        {"column": "quarantined_fraction", "min_value": 0.0, "max_value": max_quarantined_fraction},
        f"at most {max_quarantined_fraction:.2%} of inputs are quarantined"
        + (" (listed images without a file counted apart: validate.missing_files: allow)" if missing_apart else ""),
    )
    one_patient = Rule("ExpectColumnValuesToBeBetween", {"column": "n_patients", "max_value": 1},
                       "no lesion belongs to two patients")
    policy = (near_duplicates or {}).get("policy", "group")
    same_group = Rule(
        "ExpectColumnPairValuesToBeEqual", {"column_A": "group_a", "column_B": "group_b"},
        "near-duplicate images share a split group, so no pair crosses train/val/test"
        + (" (ingest.near_duplicates: report lists them only)" if policy == "report" else ""),
        severity="warning" if policy == "report" else "critical",
    )
    return [
        _Batch(MANIFEST_ASSET, manifest, ["image_id"] if "image_id" in manifest.columns else [],
               _manifest_rules(classes)),
        _Batch("sha256_labels", _hash_labels(manifest), ["sha256", "labels", "image_ids"], [conflicts]),
        _Batch("lesion_patients", _lesion_patients(manifest), ["lesion_id", "patients", "image_ids"], [one_patient]),
        _Batch("class_counts", _class_counts(manifest, classes), ["label"], [class_minimum]),
        _Batch("quarantine", quarantine_frame, ["n_quarantined", "n_inputs"], [quarantine_limit]),
        _Batch("near_duplicate_pairs", _near_duplicate_groups(manifest, near_duplicates or {}),
               ["image_a", "image_b", "distance"], [same_group]),
    ]


def _near_duplicate_groups(manifest: pd.DataFrame, near_duplicates: dict) -> pd.DataFrame:
    """One row per near-duplicate pair whose images are both in the manifest: their ids, hash distance and
    the groups the split will keep them in."""
    columns = ["image_a", "image_b", "distance", "group_a", "group_b"]
    pairs = pd.DataFrame(near_duplicates.get("pairs") or [], columns=columns)[["image_a", "image_b", "distance"]]
    if "image_id" not in manifest.columns or "group_id" not in manifest.columns:
        return pd.DataFrame(columns=columns)
    groups = manifest.drop_duplicates("image_id").set_index("image_id")["group_id"]  # ids may repeat in bad data
    pairs = pairs[pairs["image_a"].isin(groups.index) & pairs["image_b"].isin(groups.index)]
    return pairs.assign(group_a=groups.reindex(pairs["image_a"]).to_numpy(),
                        group_b=groups.reindex(pairs["image_b"]).to_numpy()).reset_index(drop=True)


def _run(gx, batches: list[_Batch]) -> list[dict]:
    """Validate every batch in a fresh ephemeral context; return the JSON-safe suite results."""
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("mobiledx")
    results = []
    for batch in batches:
        definition = source.add_dataframe_asset(batch.name).add_batch_definition_whole_dataframe(batch.name)
        expectations = [rule.to_expectation(gx.expectations) for rule in batch.rules]
        suite = context.suites.add(gx.ExpectationSuite(name=batch.name, expectations=expectations))
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=batch.name, data=definition, suite=suite)
        )
        result_format: dict[str, Any] = {"result_format": "SUMMARY"}
        if batch.index_columns:
            result_format["unexpected_index_column_names"] = batch.index_columns
        result = validation.run(batch_parameters={"dataframe": batch.frame}, result_format=result_format)
        results.append(_without_run_identity(jsonable(result.to_json_dict())))
    return results


def _without_run_identity(result: dict) -> dict:
    """A suite result without what GX makes new on every run (run and load times, random ids), so the
    same inputs always give a byte-identical ``validation.json``. The data fingerprint is kept."""
    meta = result.get("meta", {})
    for key in ("run_id", "validation_id", "validation_time"):
        meta.pop(key, None)
    meta.get("batch_markers", {}).pop("ge_load_time", None)
    for outcome in result.get("results", []):
        outcome.get("expectation_config", {}).pop("id", None)
    return result


def _hash_labels(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per duplicated sha256: its number of distinct labels, the labels and (some) image ids."""
    columns = ["sha256", "n_labels", "labels", "image_ids"]
    if not {"sha256", "label", "image_id"} <= set(manifest.columns):
        return pd.DataFrame({column: pd.Series(dtype="object") for column in columns})
    hashes = manifest["sha256"]
    duplicated = manifest.loc[hashes.notna() & hashes.duplicated(keep=False), ["sha256", "label", "image_id"]]
    grouped = duplicated.groupby("sha256", sort=True)
    frame = pd.DataFrame(
        {
            "n_labels": grouped["label"].nunique(),
            "labels": grouped["label"].agg(lambda labels: ", ".join(sorted(labels.dropna().astype(str).unique()))),
            "image_ids": grouped["image_id"].agg(_join_ids),
        }
    )
    return frame.reset_index()[columns]


def _lesion_patients(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per lesion that has a patient id: how many patients it is linked to, which, and its images."""
    columns = ["lesion_id", "n_patients", "patients", "image_ids"]
    if not {"lesion_id", "patient_id", "image_id"} <= set(manifest.columns):
        return pd.DataFrame({column: pd.Series(dtype="object") for column in columns})
    linked = manifest[manifest["lesion_id"].fillna("").ne("") & manifest["patient_id"].fillna("").ne("")]
    grouped = linked.groupby("lesion_id", sort=True)
    frame = pd.DataFrame({
        "n_patients": grouped["patient_id"].nunique(),
        "patients": grouped["patient_id"].agg(lambda ids: ", ".join(sorted(ids.astype(str).unique()))),
        "image_ids": grouped["image_id"].agg(_join_ids),
    })
    return frame.reset_index().reindex(columns=columns)


def _join_ids(ids: pd.Series) -> str:
    """Up to MAX_EXAMPLES ids, comma-separated, with a count of the rest."""
    shown = ", ".join(MISSING if pd.isna(image_id) else str(image_id) for image_id in ids.iloc[:MAX_EXAMPLES])
    rest = len(ids) - MAX_EXAMPLES
    return f"{shown} (+{rest} more)" if rest > 0 else shown


def _class_counts(manifest: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """One row per class in ``classes`` (in order) with its number of images, zero included."""
    counts = manifest["label"].value_counts() if "label" in manifest.columns else pd.Series(dtype="int64")
    return pd.DataFrame(
        {"label": pd.Series(list(classes), dtype="object"), "count": [int(counts.get(c, 0)) for c in classes]}
    )


def _expectation_outcome(result: dict, batch: _Batch) -> ExpectationOutcome:
    """Flatten one GE expectation result (JSON dict) into an :class:`ExpectationOutcome`."""
    config = result["expectation_config"]
    column = config["kwargs"].get("column")
    details = result.get("result") or {}
    error = _exception_message(result.get("exception_info") or {})
    if error:
        unexpected_count, examples = 0, [{"error": error}]
    elif "unexpected_count" in details:
        unexpected_count, examples = details["unexpected_count"], _map_examples(details, column)
    else:
        mismatched = (details.get("details") or {}).get("mismatched") or {}
        examples = [
            {"column": name, "problem": problem}
            for problem in ("missing", "unexpected")
            for name in mismatched.get(problem, [])
        ]
        unexpected_count = len(examples)
    return ExpectationOutcome(
        name=outcome_name(config["type"], column, batch.name),
        column=column,
        critical=config.get("severity", "critical") == "critical",
        success=bool(result["success"]),
        unexpected_count=int(unexpected_count),
        examples=examples[:MAX_EXAMPLES],
        detail=config.get("description") or config["type"],
    )


def _map_examples(details: dict, column: str) -> list[dict]:
    """Offending rows of a column-map expectation: identifying columns first, the tested value last."""
    indexed = details.get("partial_unexpected_index_list") or []
    values = details.get("partial_unexpected_list") or []
    examples = []
    for position, value in enumerate(values[:MAX_EXAMPLES]):
        row = indexed[position] if position < len(indexed) else None
        if isinstance(row, dict) and column is None:  # a column-pair expectation: the row names both values
            examples.append(dict(row))
        elif isinstance(row, dict):
            examples.append({key: val for key, val in row.items() if key != column} | {column: row.get(column, value)})
        elif row is not None:
            examples.append({"row": row, column: value})
        else:
            examples.append({column: value})
    return examples


def _exception_message(info: dict) -> str | None:
    """The message of an exception GE caught while evaluating an expectation, if any.

    GE reports either one ``{raised_exception, exception_message, ...}`` dict or a dict of
    them keyed by the metric that failed.
    """
    candidates = [info] if "raised_exception" in info else list(info.values())
    for candidate in candidates:
        if isinstance(candidate, dict) and candidate.get("raised_exception"):
            return str(candidate.get("exception_message") or "exception raised")
    return None


def _summary(manifest: pd.DataFrame, classes: list[str], quarantine: pd.DataFrame, quarantined_fraction: float,
             ingest_info: dict) -> dict:
    """Descriptive statistics of the manifest and quarantine for the report and JSON output."""
    n_images = len(manifest)
    counts = _value_counts(manifest, "label")
    class_counts = {label: counts.pop(label, 0) for label in classes} | counts
    ages = pd.to_numeric(manifest["age"], errors="coerce") if "age" in manifest.columns else pd.Series(dtype=float)
    known = ages.dropna()
    age = {
        "count": int(len(known)),
        "missing": int(n_images - len(known)),
        "min": float(known.min()) if len(known) else None,
        "median": float(known.median()) if len(known) else None,
        "max": float(known.max()) if len(known) else None,
    }
    return {
        "n_images": n_images,
        "n_groups": int(manifest["group_id"].nunique()) if "group_id" in manifest.columns else 0,
        "class_counts": class_counts,
        "n_quarantined": len(quarantine),
        "quarantined_fraction": quarantined_fraction,
        "quarantine_reasons": _value_counts(quarantine, "reason"),
        "age": age,
        "sex_counts": _value_counts(manifest, "sex"),
        "site_counts": _value_counts(manifest, "site"),
        "license_counts": {k: v for k, v in _value_counts(manifest, "license").items() if k},
        "grouping": ingest_info.get("grouping", ""),
        "normalised": dict(ingest_info.get("normalised", {})),
        "notes": list(ingest_info.get("notes", [])),
        "unfit_images_kept": dict(ingest_info.get("unfit_images_kept", {})),
        "near_duplicates": {key: value for key, value in (ingest_info.get("near_duplicates") or {}).items()},
    }


def _value_counts(frame: pd.DataFrame, column: str) -> dict[str, int]:
    """Counts of each value of ``frame[column]``, most frequent first; nulls counted as MISSING."""
    if column not in frame.columns:
        return {}
    counts = frame[column].value_counts(dropna=False)
    return {(MISSING if pd.isna(value) else str(value)): int(count) for value, count in counts.items()}


def _format_example(example: dict) -> str:
    """One offending row as ``{'key': value, ...}``."""
    return repr(example)

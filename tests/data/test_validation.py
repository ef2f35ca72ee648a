"""Tests for the Great Expectations validation of the ingest manifest (mobiledx.preparation.validation)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mobiledx.data.manifest import MANIFEST_COLUMNS, QUARANTINE_COLUMNS, empty_quarantine
from mobiledx.preparation.validation import (
    DataValidationError,
    ValidationOutcome,
    raise_for_critical,
    validate_manifest,
)
from mobiledx.preparation.validation_report import render_report

CLASSES = ["akiec", "bcc", "mel"]
PER_CLASS = 5

TABLE_COLUMNS = "expect_table_columns_to_match_set(manifest)"
LABEL_IN_SET = "expect_column_values_to_be_in_set(label)"
SHA256_UNIQUE = "expect_column_values_to_be_unique(sha256)"
LABEL_CONFLICT = "expect_column_values_to_be_between(sha256_labels.n_labels)"
CLASS_MINIMUM = "expect_column_values_to_be_between(class_counts.count)"
QUARANTINE_LIMIT = "expect_column_values_to_be_between(quarantine.quarantined_fraction)"
AGE_RANGE = "expect_column_values_to_be_between(age)"


def make_manifest(classes=CLASSES, per_class=PER_CLASS) -> pd.DataFrame:
    """A clean manifest: ``per_class`` images of each class, image ids like ``mel3``."""
    rows = [
        {
            "image_id": f"{label}{i}",
            "path": f"images/{label}{i}.jpg",
            "label": label,
            "group_id": f"lesion_{label}{i // 2}",
            "lesion_id": f"lesion_{label}{i // 2}",
            "patient_id": "",
            "age": 30.0 + 5 * i,
            "sex": ["male", "female", "unknown"][i % 3],
            "site": ["back", "face"][i % 2],
            "sha256": f"{label}{i}".ljust(64, "0"),
            "source_split": "",
            "width": 600,
            "height": 450,
            "license": "",
            "attribution": "",
        }
        for label in classes
        for i in range(per_class)
    ]
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def make_quarantine(n: int) -> pd.DataFrame:
    """``n`` quarantined inputs, alternating between two reasons."""
    return pd.DataFrame(
        [[f"q{i}", f"images/q{i}.jpg", ["unreadable image", "unknown label"][i % 2]] for i in range(n)],
        columns=QUARANTINE_COLUMNS,
    )


def validate(manifest, classes=CLASSES, quarantine=None, min_images=1, max_fraction=0.2) -> ValidationOutcome:
    """validate_manifest with lenient defaults, so a test fails exactly the rule it targets."""
    quarantine = empty_quarantine() if quarantine is None else quarantine
    return validate_manifest(manifest, classes, quarantine, min_images, max_fraction)


def set_value(manifest: pd.DataFrame, image_id: str, column: str, value) -> pd.DataFrame:
    """A copy of ``manifest`` with ``column`` of row ``image_id`` set to ``value``."""
    changed = manifest.copy()
    changed.loc[changed["image_id"] == image_id, column] = value
    return changed


def critical_names(outcome: ValidationOutcome) -> set[str]:
    return {failure.name for failure in outcome.critical_failures()}


def error_message(outcome: ValidationOutcome) -> str:
    with pytest.raises(DataValidationError) as excinfo:
        raise_for_critical(outcome, "demo")
    return str(excinfo.value)


@pytest.fixture(scope="module")
def clean_outcome() -> ValidationOutcome:
    return validate(make_manifest(), min_images=PER_CLASS, quarantine=make_quarantine(2))


@pytest.fixture(scope="module")
def failing_outcome() -> ValidationOutcome:
    """A bad label, a null sex and a class ("nv") without images."""
    manifest = set_value(make_manifest(), "bcc2", "label", "zzz")
    manifest = set_value(manifest, "mel1", "sex", None)
    return validate(manifest, classes=[*CLASSES, "nv"], quarantine=make_quarantine(1))


def test_clean_manifest_passes_without_warnings(clean_outcome):
    assert clean_outcome.success
    assert clean_outcome.critical_failures() == []
    assert clean_outcome.warnings() == []
    assert all(item.success and item.unexpected_count == 0 for item in clean_outcome.expectations)
    raise_for_critical(clean_outcome, "demo")


def test_every_rule_is_checked_with_the_right_severity(clean_outcome):
    severity = {item.name: item.critical for item in clean_outcome.expectations}
    expected_critical = [
        TABLE_COLUMNS,
        *(f"expect_column_values_to_not_be_null({c})" for c in ["image_id", "path", "label", "group_id", "sha256"]),
        "expect_column_values_to_be_unique(image_id)",
        LABEL_IN_SET,
        AGE_RANGE,
        "expect_column_values_to_be_in_set(sex)",
        "expect_column_values_to_be_in_type_list(age)",
        "expect_column_values_to_be_in_set(source_split)",
        LABEL_CONFLICT,
        CLASS_MINIMUM,
        QUARANTINE_LIMIT,
    ]
    for name in expected_critical:
        assert severity[name] is True, name
    assert severity[SHA256_UNIQUE] is False
    assert severity["expect_column_values_to_not_be_null(site)"] is False
    assert all(item.detail for item in clean_outcome.expectations)


@pytest.mark.parametrize(
    ("change", "expected", "needles"),
    [
        (lambda m: m.assign(extra=1), TABLE_COLUMNS, ["'extra'", "unexpected"]),
        (lambda m: m.drop(columns=["site"]), TABLE_COLUMNS, ["'site'", "missing"]),
        (lambda m: set_value(m, "mel3", "path", None), "expect_column_values_to_not_be_null(path)", ["mel3"]),
        (lambda m: set_value(m, "mel3", "group_id", None), "expect_column_values_to_not_be_null(group_id)", ["mel3"]),
        (lambda m: set_value(m, "mel3", "sha256", None), "expect_column_values_to_not_be_null(sha256)", ["mel3"]),
        (lambda m: set_value(m, "bcc1", "label", None), "expect_column_values_to_not_be_null(label)", ["bcc1"]),
        (lambda m: set_value(m, "bcc1", "image_id", None), "expect_column_values_to_not_be_null(image_id)", []),
        (lambda m: set_value(m, "bcc1", "image_id", "bcc0"), "expect_column_values_to_be_unique(image_id)", ["bcc0"]),
        (lambda m: set_value(m, "bcc2", "label", "zzz"), LABEL_IN_SET, ["'bcc2'", "'zzz'"]),
        (lambda m: set_value(m, "akiec4", "age", 130.0), AGE_RANGE, ["'akiec4'", "130"]),
        (lambda m: set_value(m, "akiec4", "age", -1.0), AGE_RANGE, ["'akiec4'", "-1"]),
        (lambda m: set_value(m, "mel0", "sex", "M"), "expect_column_values_to_be_in_set(sex)", ["'mel0'", "'M'"]),
        (lambda m: set_value(m, "mel0", "sex", None), "expect_column_values_to_not_be_null(sex)", ["'mel0'"]),
        (lambda m: set_value(m, "mel1", "source_split", "holdout"), "expect_column_values_to_be_in_set(source_split)",
         ["'mel1'", "'holdout'"]),
    ],
    ids=[
        "extra-column",
        "missing-column",
        "null-path",
        "null-group",
        "null-sha256",
        "null-label",
        "null-image-id",
        "duplicate-image-id",
        "label-not-in-classes",
        "age-above-120",
        "age-negative",
        "sex-not-in-set",
        "sex-null",
        "unknown-source-split",
    ],
)
def test_each_critical_rule_fails_and_raises(change, expected, needles):
    outcome = validate(change(make_manifest()))
    assert not outcome.success
    assert critical_names(outcome) == {expected}
    message = error_message(outcome)
    assert expected in message
    for needle in needles:
        assert needle in message


def test_label_example_shows_image_id_and_bad_label():
    outcome = validate(set_value(make_manifest(), "bcc2", "label", "zzz"))
    (failure,) = outcome.critical_failures()
    assert failure.column == "label"
    assert failure.unexpected_count == 1
    assert failure.examples == [{"image_id": "bcc2", "label": "zzz"}]


def test_manifest_without_image_id_fails_without_crashing():
    outcome = validate(make_manifest().drop(columns=["image_id"]))
    names = critical_names(outcome)
    assert TABLE_COLUMNS in names
    assert "expect_column_values_to_not_be_null(image_id)" in names
    assert "'image_id'" in error_message(outcome)


def test_duplicate_hash_with_same_label_is_only_a_warning():
    outcome = validate(set_value(make_manifest(), "mel1", "sha256", "mel0".ljust(64, "0")))
    assert outcome.success
    assert [warning.name for warning in outcome.warnings()] == [SHA256_UNIQUE]
    assert {example["image_id"] for example in outcome.warnings()[0].examples} == {"mel0", "mel1"}
    raise_for_critical(outcome, "demo")


def test_duplicate_hash_with_different_labels_is_critical():
    shared = "bcc0".ljust(64, "0")
    outcome = validate(set_value(make_manifest(), "mel1", "sha256", shared))
    assert not outcome.success
    assert critical_names(outcome) == {LABEL_CONFLICT}
    assert SHA256_UNIQUE in {warning.name for warning in outcome.warnings()}
    (failure,) = outcome.critical_failures()
    assert failure.examples == [{"sha256": shared, "labels": "bcc, mel", "image_ids": "bcc0, mel1", "n_labels": 2}]
    message = error_message(outcome)
    assert shared in message and "bcc, mel" in message


def test_class_below_minimum_is_critical_and_named():
    manifest = make_manifest()
    outcome = validate(manifest[manifest["image_id"] != "mel4"], min_images=PER_CLASS)
    assert critical_names(outcome) == {CLASS_MINIMUM}
    assert outcome.critical_failures()[0].examples == [{"label": "mel", "count": 4}]
    assert "{'label': 'mel', 'count': 4}" in error_message(outcome)


def test_class_without_images_is_critical_and_named():
    outcome = validate(make_manifest(), classes=[*CLASSES, "nv"])
    assert critical_names(outcome) == {CLASS_MINIMUM}
    assert outcome.critical_failures()[0].examples == [{"label": "nv", "count": 0}]
    assert "'nv'" in error_message(outcome)


def test_quarantined_fraction_over_limit_is_critical():
    outcome = validate(make_manifest(), quarantine=make_quarantine(2), max_fraction=0.1)  # 2 / 17
    assert critical_names(outcome) == {QUARANTINE_LIMIT}
    assert outcome.critical_failures()[0].examples == [
        {"n_quarantined": 2, "n_inputs": 17, "quarantined_fraction": pytest.approx(2 / 17)}
    ]
    assert "0.1" in error_message(outcome)


def test_quarantined_fraction_at_limit_passes():
    outcome = validate(make_manifest(), quarantine=make_quarantine(5), max_fraction=0.25)  # 5 / 20
    assert outcome.success
    assert outcome.summary["quarantined_fraction"] == 0.25


def test_unknown_age_and_age_bounds_pass():
    manifest = set_value(make_manifest(), "akiec0", "age", np.nan)
    manifest = set_value(manifest, "akiec1", "age", 0.0)
    manifest = set_value(manifest, "akiec2", "age", 120.0)
    outcome = validate(manifest)
    assert outcome.success
    assert outcome.warnings() == []
    median = manifest["age"].median()
    assert outcome.summary["age"] == {"count": 14, "missing": 1, "min": 0.0, "median": median, "max": 120.0}


def test_summary(clean_outcome):
    summary = clean_outcome.summary
    assert summary["n_images"] == 15
    assert summary["n_groups"] == 9
    assert summary["class_counts"] == {"akiec": 5, "bcc": 5, "mel": 5}
    assert summary["n_quarantined"] == 2
    assert summary["quarantined_fraction"] == pytest.approx(2 / 17)
    assert summary["quarantine_reasons"] == {"unreadable image": 1, "unknown label": 1}
    assert summary["sex_counts"] == {"male": 6, "female": 6, "unknown": 3}
    assert summary["site_counts"] == {"back": 9, "face": 6}


def test_clean_report(clean_outcome):
    report = render_report(clean_outcome, "demo")
    assert report.startswith("# Data validation: demo\n")
    assert "**Status:** ✅ passed" in report
    assert "| ✅ | `expect_column_values_to_be_in_set(label)` | critical | 0 |" in report
    assert "| ⚠️" not in report and "| ❌" not in report
    assert "| akiec | 5 | 33.3% |" in report
    assert "| 15 | 0 | 30 | 40 | 50 |" in report  # known, missing, min, median, max age
    assert "| unreadable image | 1 |" in report
    assert report.rstrip().endswith("## Failures\n\nNone.")


def test_failing_report_lists_failures_with_examples(failing_outcome):
    report = render_report(failing_outcome, "demo")
    assert "**Status:** ❌ failed" in report
    assert f"| ❌ | `{LABEL_IN_SET}` | critical | 1 |" in report
    assert "| nv | 0 | 0.0% |" in report
    assert "| zzz | 1 | 6.7% |" in report
    failures = report.split("## Failures", 1)[1]
    assert f"### ❌ `{LABEL_IN_SET}` (critical)" in failures
    assert "| bcc2 | zzz |" in failures
    assert "| nv | 0 |" in failures
    assert "| mel1 | – |" in failures  # the null sex


def test_warning_shows_in_report():
    outcome = validate(set_value(make_manifest(), "mel1", "site", None))
    assert outcome.success
    report = render_report(outcome, "demo")
    assert "**Status:** ✅ passed (0 critical failure(s), 1 warning(s))" in report
    assert "### ⚠️ `expect_column_values_to_not_be_null(site)` (warning)" in report
    assert "| (missing) | 1 |" in report


def test_to_dict_round_trips_through_json(failing_outcome):
    as_dict = failing_outcome.to_dict()
    assert json.loads(json.dumps(as_dict, allow_nan=False)) == as_dict
    assert as_dict["success"] is False
    assert len(as_dict["ge_results"]) == 6
    assert {result["suite_name"] for result in as_dict["ge_results"]} == {
        "manifest",
        "sha256_labels",
        "lesion_patients",
        "class_counts",
        "quarantine",
        "near_duplicate_pairs",
    }
    assert len(as_dict["expectations"]) == len(failing_outcome.expectations)


def test_same_inputs_give_an_identical_validation_json():
    """No run time, load time or random id of GX in the output: re-running validate changes no byte."""
    first, second = (json.dumps(validate(make_manifest()).to_dict(), sort_keys=True) for _ in range(2))
    assert first == second
    assert '"pandas_data_fingerprint"' in first  # what identifies the data is kept

"""The validation rules evaluated in pandas (the early verdict the stage shows) agree with Great Expectations
(the record) on generated manifests with every kind of fault: verdict, unexpected count and examples."""

import os

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mobiledx.data.manifest import MANIFEST_COLUMNS  # noqa: E402
from mobiledx.preparation.rules import Rule, evaluate  # noqa: E402
from mobiledx.preparation.validation import ValidationOutcome, critical_error, validate_manifest  # noqa: E402

CLASSES = ["akiec", "bcc", "mel"]
EXAMPLES = int(os.environ.get("MOBILEDX_PROPERTY_EXAMPLES", "25"))


def manifest_row(i: int) -> dict:
    label = CLASSES[i % 3]
    return {"image_id": f"ISIC_{i:07d}", "path": f"images/ISIC_{i:07d}.jpg", "label": label,
            "group_id": f"HAM_{i // 2:07d}", "lesion_id": f"HAM_{i // 2:07d}", "patient_id": "",
            "age": 30.0 + i, "sex": "female", "site": "back", "sha256": f"{i:064x}", "source_split": "",
            "width": 600, "height": 450, "license": "", "attribution": ""}


# A fault: (column, value) written into one row; None and NaN are missing values.
FAULTS = st.tuples(
    st.sampled_from(["image_id", "path", "label", "group_id", "sha256", "sex", "age", "site", "source_split",
                     "lesion_id", "patient_id"]),
    st.sampled_from([None, np.nan, "", "zzz", "ISIC_0000000", "HAM_0000000", "M", "train", "holdout", 130.0,
                     -1.0, 0.0, 120.0, "0" * 64]),
)


@st.composite
def manifests(draw) -> tuple[pd.DataFrame, pd.DataFrame, int, dict]:
    """A manifest with faults, a quarantine table, a class minimum and ingest's near-duplicate pairs."""
    n = draw(st.integers(0, 12))
    frame = pd.DataFrame([manifest_row(i) for i in range(n)], columns=MANIFEST_COLUMNS)
    for column, value in draw(st.lists(FAULTS, max_size=6)) if n else []:
        row = draw(st.integers(0, n - 1))
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
    if draw(st.booleans()):
        frame["age"] = frame["age"].infer_objects()  # float, as read_manifest gives it, unless text was written
    if draw(st.booleans()) and n:
        frame = frame.assign(patient_id=[f"IP_{draw(st.integers(0, 2))}" for _ in range(n)])
    columns = draw(st.sampled_from(["as is", "extra", "missing"]))
    if columns == "extra":
        frame = frame.assign(dataset="HAM10000")
    elif columns == "missing":
        frame = frame.drop(columns=[draw(st.sampled_from(["site", "age", "sha256", "image_id"]))])
    quarantine = pd.DataFrame({"image_id": [f"q{i}" for i in range(draw(st.integers(0, 6)))]})
    quarantine["path"], quarantine["reason"] = "", "unreadable image"
    pairs = [{"image_a": f"ISIC_{a:07d}", "image_b": f"ISIC_{b:07d}", "distance": 3}
             for a, b in draw(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), max_size=3))]
    policy = draw(st.sampled_from(["group", "report"]))
    return frame, quarantine, draw(st.integers(0, 5)), {"near_duplicates": {"policy": policy, "pairs": pairs}}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize="MOBILEDX_PROPERTY_EXAMPLES" not in os.environ)
@given(manifests())
def test_pandas_and_great_expectations_agree_on_every_rule(case):
    manifest, quarantine, min_images, info = case
    verdicts: list[ValidationOutcome] = []
    recorded = validate_manifest(manifest, CLASSES, quarantine, min_images, 0.3, ingest_info=info,
                                 on_verdict=verdicts.append)  # raises if the engines disagree
    (verdict,) = verdicts
    assert verdict.success == recorded.success
    assert {o.name for o in verdict.expectations} == {o.name for o in recorded.expectations}
    by_name = {outcome.name: outcome for outcome in recorded.expectations}
    for ours in verdict.expectations:
        theirs = by_name[ours.name]
        assert (ours.success, ours.critical) == (theirs.success, theirs.critical)
        assert ours.is_error or ours == theirs
    early, late = critical_error(verdict, "ham"), critical_error(recorded, "ham")
    assert (early is None) == (late is None)
    if early is not None and not any(o.is_error for o in verdict.expectations):
        assert str(early) == str(late)  # the message shown early is the one the record gives


def test_a_verdict_that_disagrees_with_great_expectations_is_a_bug_not_a_silent_record(monkeypatch):
    import mobiledx.preparation.validation as validation

    monkeypatch.setattr(validation, "evaluate", lambda rule, *args: evaluate(
        Rule(rule.expectation, rule.kwargs, rule.description, "warning"), *args))
    with pytest.raises(RuntimeError, match=r"pandas evaluation of expect_table_columns_to_match_set\(manifest\) "
                                           r"disagrees with Great Expectations'"):
        validate_manifest(pd.DataFrame([manifest_row(0)]), CLASSES, quarantine=pd.DataFrame(
            columns=["image_id", "path", "reason"]), min_images_per_class=1, max_quarantined_fraction=0.5)


@pytest.mark.parametrize(("values", "expected"), [
    ([1.0, None, 3.0], ("ExpectColumnValuesToBeBetween", {"min_value": 2.0}, 1, [{"image_id": "a", "x": 1.0}])),
    (["a", "a", None, None], ("ExpectColumnValuesToBeUnique", {}, 2, [{"image_id": "a", "x": "a"},
                                                                      {"image_id": "b", "x": "a"}])),
    ([None, "b"], ("ExpectColumnValuesToNotBeNull", {}, 1, [{"image_id": "a", "x": None}])),
    (["b", "q", None], ("ExpectColumnValuesToBeInSet", {"value_set": ["b"]}, 1, [{"image_id": "b", "x": "q"}])),
])
def test_map_rules_skip_missing_values_and_name_the_rows(values, expected):
    expectation, kwargs, count, examples = expected
    frame = pd.DataFrame({"image_id": list("abcd"[:len(values)]), "x": values})
    outcome = evaluate(Rule(expectation, {"column": "x", **kwargs}, "x rule"), frame, "manifest", ["image_id"])
    assert (outcome.success, outcome.unexpected_count, outcome.examples) == (False, count, examples)
    assert outcome.name.endswith("(x)") and outcome.critical


def test_a_rule_on_a_missing_column_is_an_error_not_a_crash():
    outcome = evaluate(Rule("ExpectColumnValuesToNotBeNull", {"column": "age"}, "age rule"),
                       pd.DataFrame({"image_id": ["a"]}), "class_counts", [])
    assert outcome.is_error and not outcome.success
    assert outcome.examples == [{"error": "column 'age' is not in the batch"}]
    assert outcome.name == "expect_column_values_to_not_be_null(class_counts.age)"


def test_without_an_id_column_offending_rows_are_named_by_their_row_as_great_expectations_does():
    manifest = pd.DataFrame([manifest_row(i) for i in range(3)]).drop(columns=["image_id"])
    manifest.loc[1, "label"] = "zzz"
    outcome = validate_manifest(manifest, CLASSES, pd.DataFrame(columns=["image_id", "path", "reason"]), 0, 0.5)
    (label,) = [o for o in outcome.expectations if o.name == "expect_column_values_to_be_in_set(label)"]
    assert label.examples == [{"row": 1, "label": "zzz"}]  # Great Expectations' outcome, equal to pandas'

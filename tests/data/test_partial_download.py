"""A partial download is a choice a user can make: validate.missing_files (issue 25, item 2).

Images the metadata lists but no file holds are quarantined by ingest ("image listed in ... but no file
found"). By default (``refuse``) they count toward ``validate.max_quarantined_fraction``, and the error
says how to proceed deliberately; with ``allow`` they are counted apart from refused inputs, and the
report and the model card say that the model saw a subset.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from mobiledx.data.intake import LISTED_WITHOUT_FILE, ingest
from mobiledx.data.manifest import MANIFEST_COLUMNS, QUARANTINE_COLUMNS
from mobiledx.params import ParamsError, parse_params
from mobiledx.preparation.validation import (
    DataValidationError,
    count_missing_files,
    raise_for_critical,
    validate_manifest,
)
from mobiledx.preparation.validation_report import render_report
from mobiledx.release.modelcard import build_model_card, render_markdown
from tests.support import ham_rows, write_ham10000

MISSING_REASON = "image listed in HAM10000_metadata.csv but no file found"
CLASSES = ["akiec", "bcc", "mel"]


def manifest_and_quarantine(n_missing: int, n_refused: int):
    """A clean 15-image manifest and a quarantine of listed-without-file and refused inputs."""
    manifest = pd.DataFrame([{
        "image_id": f"{label}{i}", "path": f"images/{label}{i}.jpg", "label": label, "group_id": f"{label}{i}",
        "lesion_id": f"{label}{i}", "patient_id": "", "age": 50.0, "sex": "female", "site": "back",
        "sha256": f"{label}{i}".ljust(64, "0"), "source_split": "", "width": 600, "height": 450, "license": "",
        "attribution": ""} for label in CLASSES for i in range(5)], columns=MANIFEST_COLUMNS)
    rows = [[f"m{i}", "", MISSING_REASON] for i in range(n_missing)]
    rows += [[f"r{i}", f"images/r{i}.jpg", "unreadable: cannot decode image"] for i in range(n_refused)]
    return manifest, pd.DataFrame(rows, columns=QUARANTINE_COLUMNS)


def minimal_card(info: dict, **overrides) -> dict:
    metrics = {"n_images": 10, "accuracy": 0.5, "balanced_accuracy": 0.5, "roc_auc_macro": 0.5, "per_class": {}}
    arguments = dict(dataset="ham", info={"kind": "ham10000", "classes": CLASSES, "image_size": 96, **info},
                     synthetic=False, params=parse_params({}), run={}, metrics=metrics, subgroups=[], variants={},
                     license="CC0 1.0")
    return build_model_card(**{**arguments, **overrides})


def test_by_default_missing_files_count_as_quarantined_and_the_error_names_the_setting():
    manifest, quarantine = manifest_and_quarantine(n_missing=8, n_refused=1)
    outcome = validate_manifest(manifest, CLASSES, quarantine, 1, 0.1)
    assert not outcome.success
    assert outcome.summary["quarantined_fraction"] == pytest.approx(9 / 24)
    assert outcome.summary["n_missing_files"] == 8 and outcome.summary["missing_files"] == "refuse"
    with pytest.raises(DataValidationError) as raised:
        raise_for_critical(outcome, "ham")
    message = str(raised.value)
    assert "8 of the 9 quarantined inputs are images listed in the metadata without a file" in message
    assert "validate.missing_files: allow" in message and "-S validate.missing_files=allow" in message
    assert "model card records that the model saw a subset" in message
    assert "set `validate.missing_files: allow`" in render_report(outcome, "ham")


def test_allow_counts_missing_files_apart_from_refused_inputs():
    manifest, quarantine = manifest_and_quarantine(n_missing=8, n_refused=1)
    outcome = validate_manifest(manifest, CLASSES, quarantine, 1, 0.1, missing_files="allow")
    assert outcome.success  # 1 refused of 16: 6.25 %
    summary = outcome.summary
    assert summary["quarantined_fraction"] == pytest.approx(1 / 16)
    assert summary["n_quarantined"] == 9 and summary["n_quarantined_counted"] == 1 and summary["n_missing_files"] == 8
    report = render_report(outcome, "ham")
    assert "8 are images listed in the metadata without a file" in report
    assert "the model sees a subset of the collection" in report and "Refused inputs: 1 (6.25% of 16)" in report


def test_allow_still_enforces_the_limit_on_refused_inputs():
    manifest, quarantine = manifest_and_quarantine(n_missing=8, n_refused=4)
    outcome = validate_manifest(manifest, CLASSES, quarantine, 1, 0.1, missing_files="allow")
    assert not outcome.success and outcome.summary["quarantined_fraction"] == pytest.approx(4 / 19)
    with pytest.raises(DataValidationError) as raised:
        raise_for_critical(outcome, "ham")
    assert "listed in the metadata without a file" not in str(raised.value)  # already allowed: not the fix


def test_ingests_count_is_preferred_and_the_reason_is_the_fallback():
    _, quarantine = manifest_and_quarantine(n_missing=3, n_refused=2)
    assert count_missing_files(quarantine) == 3
    assert count_missing_files(quarantine, {"n_missing_files": 5}) == 5
    assert count_missing_files(quarantine, {"notes": []}) == 3


@pytest.mark.parametrize("reason", [MISSING_REASON, "listed in the labels CSV but no file found",
                                    "image listed in metadata.csv but no file found"])
def test_every_adapters_missing_file_reason_is_recognised(reason):
    assert LISTED_WITHOUT_FILE.search(reason)
    assert count_missing_files(pd.DataFrame([["x", "", reason]], columns=QUARANTINE_COLUMNS)) == 1


def test_other_reasons_are_not_missing_files():
    refused = ["several files for one image id", "image file not listed in HAM10000_metadata.csv",
               "unreadable: cannot decode image", "empty file (0 bytes)"]
    quarantine = pd.DataFrame([[str(i), "", reason] for i, reason in enumerate(refused)], columns=QUARANTINE_COLUMNS)
    assert count_missing_files(quarantine) == 0


def test_ingest_counts_listed_images_without_a_file(tmp_path):
    rows = ham_rows(3)
    root = write_ham10000(tmp_path / "ham", rows)
    removed = [row["image_id"] for row in rows[:20]]  # most of the download is absent
    for image_id in removed:
        next(root.rglob(f"{image_id}.jpg")).unlink()
    result = ingest(root, "ham10000", image_size=8, images_path=tmp_path / "images.npy", workers=1)
    assert result.n_missing_files == 20
    assert count_missing_files(result.quarantine) == 20  # validation's fallback agrees with ingest's count
    assert len(result.manifest) == len(rows) - 20


def test_the_validate_stage_refuses_then_allows_a_partial_download(tmp_path, monkeypatch, capsys):
    from mobiledx.pipeline import ingest as ingest_stage
    from mobiledx.pipeline import run_stage
    from mobiledx.pipeline import validate as validate_stage

    rows = ham_rows(10)  # 140 images
    write_ham10000(tmp_path / "raw" / "ham", rows)
    for row in rows[::4]:  # a quarter of them never downloaded
        next((tmp_path / "raw" / "ham").rglob(f"{row['image_id']}.jpg")).unlink()
    settings = {"datasets": {"ham": {"kind": "ham10000", "path": "raw/ham", "license": "CC BY-NC-SA 4.0"}},
                "ingest": {"image_size": 8, "workers": 1}, "validate": {"min_images_per_class": 1}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings))
    monkeypatch.chdir(tmp_path)
    run_stage(ingest_stage.ingest_dataset, "ingest", argv=["ham"])
    capsys.readouterr()  # ingest's progress bars

    with pytest.raises(SystemExit) as exited:
        run_stage(validate_stage.validate_dataset, "validate", argv=["ham"])
    assert exited.value.code == 1
    error = capsys.readouterr().err
    assert error.startswith("mobiledx: error: Data validation failed") and "Traceback" not in error
    assert error.count("mobiledx: error:") == 1  # shown at once from the verdict, not again when the stage ends
    assert "35 of the 35 quarantined inputs are images listed in the metadata without a file" in error
    assert "validate.missing_files: allow" in error

    settings["validate"]["missing_files"] = "allow"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings))
    run_stage(validate_stage.validate_dataset, "validate", argv=["ham"])
    out = capsys.readouterr().out
    assert "35 listed images have no file" in out and "all critical expectations met" in out
    summary = json.loads((tmp_path / "data/validated/ham/validation.json").read_text())["summary"]
    assert summary["n_missing_files"] == 35 and summary["quarantined_fraction"] == 0.0


def test_missing_files_setting_is_checked():
    assert parse_params({}).validate.missing_files == "refuse"
    assert parse_params({"validate": {"missing_files": "allow"}}).validate.missing_files == "allow"
    with pytest.raises(ParamsError, match="validate.missing_files must be one of"):
        parse_params({"validate": {"missing_files": "yes"}})


def test_model_card_records_the_subset():
    result = minimal_card({"n_images": 245, "n_quarantined": 9770, "n_missing_files": 9770})
    assert result["dataset"]["n_missing_files"] == 9770
    subset = [note for note in result["limitations"] if note.startswith("Subset of the collection")]
    assert subset and "9,770 image(s) listed in the dataset's metadata had no file" in subset[0]
    markdown = render_markdown(result)
    assert "of which 9,770 listed images had no file: a SUBSET of the collection" in markdown
    complete = minimal_card({"n_images": 10015, "n_quarantined": 0, "n_missing_files": 0})
    assert not any(note.startswith("Subset") for note in complete["limitations"])

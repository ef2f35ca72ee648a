"""Expected errors are one clear message with the fix, exit status 1, never a traceback.

Each stage script runs as DVC runs it, in a small project folder (params.yaml + raw data).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, ham_project, ham_rows, write_ham10000


def stage(name: str, project: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "stages" / f"{name}.py"), *arguments], cwd=project,
                          capture_output=True, text=True, timeout=300)


def assert_one_clear_error(done: subprocess.CompletedProcess, *expected: str) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stderr.startswith("mobiledx: error: "), done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr


def test_a_missing_raw_folder_names_the_fix(tmp_path):
    done = stage("ingest", ham_project(tmp_path), "ham")
    assert_one_clear_error(done, "raw data folder data/raw/ham does not exist. Fix: copy the dataset there",
                           "dvc add data/raw/ham")
    assert done.stderr.count("\n") == 1


def test_an_unknown_dataset_kind_or_name_names_the_choices(tmp_path):
    root = ham_project(tmp_path, datasets={"ham": {"kind": "dicom", "path": "data/raw/ham"}})
    write_ham10000(root / "data" / "raw" / "ham", ham_rows(1))
    assert_one_clear_error(stage("ingest", root, "ham"), "unknown dataset kind 'dicom'", "isic_archive")
    assert_one_clear_error(stage("ingest", root, "skin"), "dataset 'skin' is not registered", "registered: ham")


def test_an_unreadable_params_value_names_the_key(tmp_path):
    root = ham_project(tmp_path, train={"epochs": "many"})
    assert_one_clear_error(stage("train", root, "ham"), "params.yaml: train.epochs must be a whole number, got 'many'")


@pytest.fixture
def ingested(tmp_path) -> Path:
    root = ham_project(tmp_path)
    write_ham10000(root / "data" / "raw" / "ham", ham_rows(1))
    done = stage("ingest", root, "ham")
    assert done.returncode == 0, done.stderr
    return root


def test_a_data_validation_failure_names_the_expectation_and_the_rows(ingested):
    ham_project(ingested, validate={"min_images_per_class": 5})
    done = stage("validate", ingested, "ham")
    assert_one_clear_error(done, "Data validation failed for dataset 'ham'", "every class has at least 5 images",
                           "Fix: correct the raw data")
    assert (ingested / "data" / "validated" / "ham" / "report.md").exists()  # written before failing


def test_a_data_validation_failure_is_shown_before_great_expectations_loads(ingested):
    """The message comes from the rules' pandas verdict, within a second; Great Expectations (seconds to import)
    then records the same in the report. ``-X importtime`` logs each import to stderr as it ends: the order shows."""
    ham_project(ingested, validate={"min_images_per_class": 5})
    done = subprocess.run([sys.executable, "-X", "importtime", str(REPO_ROOT / "stages" / "validate.py"), "ham"],
                          cwd=ingested, capture_output=True, text=True, timeout=300)
    lines = done.stderr.splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("mobiledx: error: ")]
    imports = [i for i, line in enumerate(lines) if "great_expectations" in line]
    assert done.returncode == 1 and len(errors) == 1, done.stderr[-2000:]
    assert imports and errors[0] < imports[0]
    assert "every class has at least 5 images" in lines[errors[0] + 1]
    report = (ingested / "data" / "validated" / "ham" / "report.md").read_text()
    assert "❌ `expect_column_values_to_be_between(class_counts.count)`" in report


def test_too_few_groups_to_split_names_the_fix(ingested):
    ham_project(ingested, split={"test_fraction": 0.1, "val_fraction": 0.2})
    assert_one_clear_error(stage("split", ingested, "ham"), "only 7 groups", "too few to hold out 10% by group",
                           "Fix: lower split.test_fraction")
    ham_project(ingested, split={"test_fraction": 0.45, "val_fraction": 0.45})
    assert_one_clear_error(stage("split", ingested, "ham"), "have no training image after the split",
                           "Fix: lower split.test_fraction")

"""The whole DVC pipeline on tiny demo data, in a throwaway git + DVC repository.

Checks what a user relies on: `dvc repro` builds every stage for both datasets, a second
`dvc repro` does nothing, `dvc exp run -S lr=...` re-runs only train/evaluate/export, and each
run lands in the MLflow store with its params, per-epoch and test metrics and `.tflite` files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.project import DATASETS, copy_project, run, run_in_background, stages_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(built_project, tmp_path_factory) -> Path:
    """This module's own copy of the built tiny pipeline (git + DVC repository, committed after `dvc repro`)."""
    return copy_project(built_project, tmp_path_factory.mktemp("pipeline") / "project")


def mlflow_runs(root: Path):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mobiledx")
    return client, client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


@pytest.fixture(scope="module", autouse=True)
def lr_experiment(built_project, tmp_path_factory):
    """`dvc exp run -S lr=0.0001` in a second copy, started with the module: it runs (its stages mostly
    on one core) while the other tests here use the other core; its test waits for it."""
    root = copy_project(built_project, tmp_path_factory.mktemp("lr-experiment") / "project")
    experiment = run_in_background(["dvc", "exp", "run", "-S", "lr=0.0001"], root)
    yield experiment
    experiment.stop()


@pytest.fixture(scope="module")
def repro(first_repro) -> str:
    """Output of the first `dvc repro` of the built project (every stage of both datasets)."""
    return first_repro


def test_repro_runs_every_stage_for_both_datasets(project, repro):
    expected = {"make_demo"} | {f"{s}@{d}" for s in ("ingest", "validate", "split", "rebalance", "train",
                                                       "evaluate", "export") for d in DATASETS}
    assert stages_run(repro) == expected
    for dataset in DATASETS:
        for output in ("data/ingested/{}/images.npy", "data/validated/{}/report.md", "data/split/{}/split.csv",
                       "data/rebalanced/{}/class_weights.json", "data/models/{}/model.keras",
                       "data/evaluation/{}/metrics.json", "data/evaluation/{}/confusion_matrix.png",
                       "data/evaluation/{}/reliability.png",
                       "data/export/{}/model_float32.tflite", "data/export/{}/model_int8.tflite"):
            assert (project / output.format(dataset)).stat().st_size > 0
    assert (project / "data/raw/demo-skin/HAM10000_metadata.csv").exists()
    assert list((project / "data/raw/demo-blood/training_data").glob("fold_*/all/UID_*_all.bmp"))


def test_export_report_counts_the_test_images_each_variant_changes(project, repro):
    for dataset in DATASETS:
        report = json.loads((project / f"data/export/{dataset}/export.json").read_text())
        n_test = json.loads((project / f"data/evaluation/{dataset}/metrics.json").read_text())["n_images"]
        for figures in report.values():
            assert figures["disagreements_with_keras"] == round((1 - figures["agreement_with_keras"]) * n_test)
        assert report["float32"]["disagreements_with_keras"] == 0
        card = (project / f"data/export/{dataset}/model_card.md").read_text()
        assert f"({report['int8']['disagreements_with_keras']} differ)" in card
        assert f"The test split has {n_test} images" in card


def test_no_group_crosses_splits_in_the_pipeline_outputs(project, repro):
    import pandas as pd

    for dataset in DATASETS:
        split = pd.read_csv(project / f"data/split/{dataset}/split.csv")
        assert (split.groupby("group_id")["split"].nunique() == 1).all()
        assert set(split["split"]) == {"train", "val", "test"}


def test_each_dataset_has_one_complete_mlflow_run(project, repro):
    client, runs = mlflow_runs(project)
    assert sorted(r.data.tags["dataset"] for r in runs) == sorted(DATASETS)
    for found in runs:
        assert found.info.status == "FINISHED"
        assert found.data.params["lr"] == "0.001" and found.data.params["train.epochs"] == "2"
        assert len(client.get_metric_history(found.info.run_id, "val_loss")) == 2  # one point per epoch
        metrics = found.data.metrics
        assert 0.0 <= metrics["test_balanced_accuracy_ci95_low"] <= metrics["test_balanced_accuracy"] \
            <= metrics["test_balanced_accuracy_ci95_high"] <= 1.0
        assert "tflite_int8_agreement_with_keras" in found.data.metrics
        artifacts = {a.path for a in client.list_artifacts(found.info.run_id, "tflite")}
        assert {"tflite/model_float32.tflite", "tflite/model_int8.tflite", "tflite/labels.txt"} <= artifacts
        assert found.data.tags["raw_data_hash"] and len(found.data.tags["git_commit"]) == 40


def test_second_repro_does_nothing(project, repro):
    output = run(["dvc", "repro"], project)
    assert stages_run(output) == set()


def test_forced_rebuild_gives_identical_split_and_metrics(project, repro):
    """Same params + same data = same split and model: `dvc repro -f` reproduces the outputs exactly."""
    outputs = ["data/split/demo-skin/split.csv", "data/models/demo-blood/history.csv",
               "data/evaluation/demo-blood/metrics.json", "data/evaluation/demo-blood/predictions.csv"]
    before = {path: (project / path).read_bytes() for path in outputs}
    for stage in ("split@demo-skin", "train@demo-blood", "evaluate@demo-blood"):
        run(["dvc", "repro", "-f", "-s", stage], project)
    changed = [path for path in outputs if (project / path).read_bytes() != before[path]]
    assert changed == []


def test_lr_experiment_reruns_only_training_onwards(lr_experiment, repro):
    output = lr_experiment.result()
    project = lr_experiment.cwd
    assert stages_run(output) == {f"{s}@{d}" for s in ("train", "evaluate", "export") for d in DATASETS}
    client, runs = mlflow_runs(project)
    new = [r for r in runs if r.data.params["lr"] == "0.0001"]
    assert sorted(r.data.tags["dataset"] for r in new) == sorted(DATASETS)
    for found in new:
        assert found.data.tags["dvc_exp_name"] != "workspace"
        assert "tflite/model_int8.tflite" in {a.path for a in client.list_artifacts(found.info.run_id, "tflite")}

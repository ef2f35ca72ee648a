"""The whole DVC pipeline on tiny demo data, in a throwaway git + DVC repository.

Checks what a user relies on: `dvc repro` builds every stage for both datasets, a second
`dvc repro` does nothing, `dvc exp run -S lr=...` re-runs only train/evaluate/export, and each
run lands in the MLflow store with its params, per-epoch and test metrics and `.tflite` files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

DATASETS = ("demo-skin", "demo-blood")
TINY = {
    "demo": {"skin_images": 120, "blood_subjects": 6, "blood_cells_per_subject": 8},
    "ingest": {"image_size": 32, "workers": 2},
    "validate": {"min_images_per_class": 2},
    "split": {"test_fraction": 0.25, "val_fraction": 0.2},
    "train": {"epochs": 2, "batch_size": 16, "dense_units": 16, "bn_calibration_images": 32},
    "evaluate": {"bootstrap_samples": 50},
    "export": {"representative_images": 8, "latency_runs": 5},
}


def run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{output[-6000:]}"
    return output


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the pipeline with tiny params, committed in a fresh git + DVC repository."""
    root = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(REPO_ROOT / name, root / name)
    for folder in ("stages", "src"):
        shutil.copytree(REPO_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    for group, values in TINY.items():
        params[group].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / ".gitignore").write_text("/mlruns/\n")
    run(["git", "init", "-q", "-b", "main"], root)
    run(["git", "config", "user.email", "test@example.com"], root)
    run(["git", "config", "user.name", "test"], root)
    run(["dvc", "init", "-q"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "tiny pipeline"], root)
    return root


def mlflow_runs(root: Path):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mobiledx")
    return client, client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


@pytest.fixture(scope="module")
def repro(project) -> str:
    output = run(["dvc", "repro"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "repro"], project)
    return output


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
    run(["dvc", "repro", "export@demo-blood"], project)  # bring the workspace back up to date


def test_lr_experiment_reruns_only_training_onwards(project, repro):
    output = run(["dvc", "exp", "run", "-S", "lr=0.0001"], project)
    assert stages_run(output) == {f"{s}@{d}" for s in ("train", "evaluate", "export") for d in DATASETS}
    client, runs = mlflow_runs(project)
    new = [r for r in runs if r.data.params["lr"] == "0.0001"]
    assert sorted(r.data.tags["dataset"] for r in new) == sorted(DATASETS)
    for found in new:
        assert found.data.tags["dvc_exp_name"] != "workspace"
        assert "tflite/model_int8.tflite" in {a.path for a in client.list_artifacts(found.info.run_id, "tflite")}


def test_two_queued_experiments_in_parallel_share_one_store(project, repro):
    import time

    for lr in ("0.01", "0.003"):
        run(["dvc", "exp", "run", "--queue", "-S", f"lr={lr}"], project)
    run(["dvc", "queue", "start", "-j", "2"], project)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], project)
        if not any(word in status for word in ("Queued", "Running")):
            break
        time.sleep(5)
    assert status.count("Success") == 2, status
    client, runs = mlflow_runs(project)
    for lr in ("0.01", "0.003"):
        queued = [r for r in runs if r.data.params["lr"] == lr]
        assert sorted(r.data.tags["dataset"] for r in queued) == sorted(DATASETS), lr
        assert all(r.info.status == "FINISHED" for r in queued)
        assert all(r.data.metrics.get("tflite_float32_accuracy") is not None for r in queued)

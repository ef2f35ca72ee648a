"""A training killed with SIGKILL mid-epoch (`dvc repro` and the stage, the whole process group) resumes
from its last completed epoch when `dvc repro` runs again, in a copy of the built tiny pipeline.

Injected: `train.epochs=6` (patience 50, so early stopping cannot end it first) for demo-skin; `dvc repro
train@demo-skin` started in its own process group and killed with SIGKILL as soon as the backup under
`.dvc/tmp/train-backup/` holds two completed epochs. Asserted after the kill: no model.keras (DVC removed
the old one before running the stage; the stage writes it atomically, so there is no partial file either),
no temporary files, dvc.lock still records the previous training, `dvc status` reports the stage changed.
Asserted after `dvc repro` again: it printed "resuming from epoch N" with N >= 2 and continued the same
MLflow run; history.csv has epochs 1..6 exactly once; the outputs are valid; `dvc status` is clean for the
stage; the backup is gone; MLflow holds ONE new run, FINISHED, with per-epoch metrics at steps 0..5
(once each) and no run left RUNNING.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.support.project import copy_project, dvc_env, run

pytestmark = pytest.mark.slow

DATASET = "demo-skin"
STAGE = f"train@{DATASET}"
EPOCHS = 6
TWO_EPOCHS_TIMEOUT = 900  # seconds until the backup holds two epochs: bounds a hang only, never a loaded machine


def completed_epochs(root: Path) -> int:
    """The newest completed epoch in the training backups of DATASET (0 if none)."""
    newest = 0
    for path in (root / ".dvc" / "tmp" / "train-backup" / DATASET).glob("*/chief/state-*.json"):
        try:
            newest = max(newest, json.loads(path.read_text())["epoch"])
        except (OSError, ValueError, KeyError):  # pruned or replaced while we looked
            continue
    return newest


def mlflow_runs(root: Path):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mobiledx")
    return client, client.search_runs([experiment.experiment_id], max_results=1000)


def test_sigkill_mid_epoch_then_repro_resumes_from_the_last_completed_epoch(built_project, tmp_path):
    root = copy_project(built_project, tmp_path / "project")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"].update({"epochs": EPOCHS, "patience": 50})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-q", "-am", f"{EPOCHS} epochs"], root)
    lock_before = yaml.safe_load((root / "dvc.lock").read_text())["stages"][STAGE]
    _, runs = mlflow_runs(root)
    runs_before = {r.info.run_id for r in runs}

    log = open(tmp_path / "killed.log", "w")
    process = subprocess.Popen(["dvc", "repro", STAGE], cwd=root, env=dvc_env(), stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + TWO_EPOCHS_TIMEOUT
    try:
        while completed_epochs(root) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        at_kill = completed_epochs(root)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # dvc and the stage's python: no cleanup runs
        process.wait()
        log.close()
    killed_output = (tmp_path / "killed.log").read_text()
    assert process.returncode == -signal.SIGKILL, killed_output[-4000:]
    assert 2 <= at_kill < EPOCHS, f"epochs completed at the kill: {at_kill}\n{killed_output[-4000:]}"

    # Nothing a later run could mistake for a complete output: what is left of the stage's outputs is
    # the previous training's (DVC deletes cached outputs before running a stage), nothing of the killed one.
    models = root / "data" / "models" / DATASET
    assert not (models / "model.keras").exists()
    assert not [p.name for p in models.glob(".*tmp-*")]  # no temporary file of an atomic write
    for path in models.iterdir():
        assert path.read_bytes() == (built_project / path.relative_to(root)).read_bytes(), path.name
    assert yaml.safe_load((root / "dvc.lock").read_text())["stages"][STAGE] == lock_before
    assert STAGE in run(["dvc", "status", STAGE], root)  # changed: DVC knows it must run again

    output = run(["dvc", "repro", STAGE], root)
    (tmp_path / "resumed.log").write_text(output)
    resumed = re.search(r"resuming from epoch (\d+)", output)
    assert resumed and at_kill <= int(resumed.group(1)) < EPOCHS, output[-4000:]
    assert "continuing MLflow run" in output
    history = pd.read_csv(models / "history.csv")
    assert history["epoch"].tolist() == list(range(1, EPOCHS + 1))  # each epoch exactly once
    assert json.loads((models / "train_metrics.json").read_text())[DATASET]["epochs_run"] == EPOCHS

    import keras

    classes = json.loads((root / "data" / "ingested" / DATASET / "dataset.json").read_text())["classes"]
    assert keras.models.load_model(models / "model.keras").output_shape == (None, len(classes))
    assert "Data and pipelines are up to date" in run(["dvc", "status", STAGE], root)
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"][STAGE]
    assert lock["params"]["params.yaml"]["train"]["epochs"] == EPOCHS
    assert not list((root / ".dvc" / "tmp" / "train-backup").rglob("state-*.json"))  # backup deleted

    client, runs = mlflow_runs(root)
    new = [r for r in runs if r.info.run_id not in runs_before]
    assert [r.info.status for r in new] == ["FINISHED"], [(r.info.run_name, r.info.status) for r in new]
    assert not [r for r in runs if r.info.status == "RUNNING"]
    run_id = new[0].info.run_id
    assert json.loads((models / "run.json").read_text())["run_id"] == run_id
    for metric in ("loss", "val_loss", "accuracy"):
        steps = sorted(m.step for m in client.get_metric_history(run_id, metric))
        assert steps == list(range(EPOCHS)), (metric, steps)

"""Four queued experiments run two at a time (`dvc queue start -j 2`) and log to ONE MLflow store:
every one completes, and each has exactly one MLflow run, none lost and none duplicated.

Twice: with the repository's SQLite store (two of the four run the whole train → evaluate →
export chain, so evaluate and export re-open their runs concurrently and export registers model
versions; the other two run train, which creates the runs), and with a real `mlflow server` on
127.0.0.1 (MLFLOW_TRACKING_URI exported to DVC; train only). One dataset, one epoch of the paper-003 MLP
baseline without augmentation or BatchNorm calibration keep them small: they test DVC's queue and the MLflow store,
not a model (the MobileNet pipeline is exercised by test_pipeline.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.project import copy_project, run, run_in_background, run_unchecked

pytestmark = pytest.mark.slow

LRS = ("0.01", "0.003", "0.0003", "0.0001")  # as MLflow stores them (no 1e-05 notation)
FULL_CHAIN = ("0.01", "0.003")  # SQLite store: these two run train → evaluate → export, the others train
QUICK = {"train.epochs": "1", "train.backbone": "mlp", "train.augmentation": "none", "train.bn_calibration_images": "0"}
DATASET = "demo-skin"
QUEUE_TIMEOUT = 900  # seconds for the four experiments


def queue(project: Path, target: str, learning_rates: tuple[str, ...] = LRS, env: dict | None = None) -> None:
    """Queue one experiment per learning rate (one command: comma-separated values make a grid)."""
    overrides = [arg for key, value in QUICK.items() for arg in ("-S", f"{key}={value}")]
    run(["dvc", "exp", "run", "--queue", target, "-S", f"lr={','.join(learning_rates)}", *overrides], project, env=env)


def run_queue(project: Path, env: dict | None = None) -> list[str]:
    """`dvc queue start -j 2`, wait until nothing is queued or running; the names of the successful experiments."""
    queued = run(["dvc", "queue", "status"], project, env=env)
    assert queued.count("Queued") == len(LRS), queued
    # The workers outlive `dvc queue start` and inherit its output: a file, not a pipe, so that a
    # worker that lingers after the queue is empty (seen once in DVC 3.67) cannot hold this test.
    run_in_background(["dvc", "queue", "start", "-j", "2"], project, env=env).result(timeout=120)
    deadline = time.monotonic() + QUEUE_TIMEOUT
    try:
        while True:
            status = run(["dvc", "queue", "status"], project, env=env)
            finished = status.count("Success") + status.count("Failed")
            # a task a worker is just taking is briefly neither Queued nor Running: count the finished ones
            if finished >= len(LRS) and not any(word in status for word in ("Queued", "Running")):
                break
            assert time.monotonic() < deadline, f"queue still busy after {QUEUE_TIMEOUT}s:\n{status}"
            time.sleep(4)  # each `dvc queue status` costs ~1 s of CPU that the experiments need
    finally:  # never leave workers, busy or idle, in the background of later tests
        run_unchecked(["dvc", "queue", "stop", "--kill"], project, timeout=120, env=env)
    failed = [line.split()[0] for line in status.splitlines() if line.rstrip().endswith("Failed")]
    logs = {task: run_unchecked(["dvc", "queue", "logs", task], project, timeout=120, env=env) for task in failed}
    assert status.count("Success") == len(LRS), status + "".join(
        f"\n--- dvc queue logs {task}:\n{done.stdout[-3000:]}{done.stderr[-2000:]}" for task, done in logs.items())
    names = run(["dvc", "exp", "list", "--name-only"], project, env=env).split()
    assert len(names) == len(set(names)) == len(LRS), names
    return names


def new_runs(client, experiment: str = "mobiledx") -> list:
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], filter_string="tags.dvc_exp_name != 'workspace'")


def assert_one_run_per_experiment(runs, names: list[str]) -> None:
    """Exactly one MLflow run per queued experiment: the right dataset, params and status."""
    by_name = sorted((r.data.tags["dvc_exp_name"], r.data.params["lr"]) for r in runs)
    assert [name for name, _ in by_name] == sorted(names), by_name  # none lost, none duplicated
    assert sorted(lr for _, lr in by_name) == sorted(LRS)  # one run per learning rate
    for found in runs:
        assert found.data.tags["dataset"] == DATASET
        assert {key: found.data.params[key] for key in QUICK} == QUICK
        assert found.info.status == "FINISHED", (found.data.tags["dvc_exp_name"], found.info.status)


def test_four_queued_experiments_share_the_sqlite_store(built_project, tmp_path):
    import mlflow

    project = copy_project(built_project, tmp_path / "project")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    before = {r.info.run_id for r in client.search_runs([client.get_experiment_by_name("mobiledx").experiment_id])}
    versions_before = len(client.search_model_versions(f"name = '{DATASET}'"))
    queue(project, f"export@{DATASET}", FULL_CHAIN)  # evaluate and export re-open these runs concurrently
    queue(project, f"train@{DATASET}", tuple(lr for lr in LRS if lr not in FULL_CHAIN))
    names = run_queue(project)
    everything = client.search_runs([client.get_experiment_by_name("mobiledx").experiment_id])
    runs = [r for r in everything if r.info.run_id not in before]
    assert len(everything) == len(before) + len(LRS)  # no stray run anywhere in the store
    assert_one_run_per_experiment(runs, names)
    exported = [r for r in runs if r.data.params["lr"] in FULL_CHAIN]
    assert len(exported) == len(FULL_CHAIN)
    for found in exported:  # evaluate and export resumed the run
        assert found.data.metrics.get("test_balanced_accuracy") is not None
        assert found.data.metrics.get("tflite_float32_accuracy") is not None
        assert "tflite/model_int8.tflite" in {a.path for a in client.list_artifacts(found.info.run_id, "tflite")}
    versions = client.search_model_versions(f"name = '{DATASET}'")
    assert len(versions) == versions_before + len(FULL_CHAIN)
    assert sorted(v.run_id for v in versions if v.run_id not in before) == sorted(r.info.run_id for r in exported)


def test_four_queued_experiments_share_one_tracking_server(built_project, tmp_path, mlflow_server):
    import mlflow

    project = copy_project(built_project, tmp_path / "project")
    queue(project, f"train@{DATASET}")  # while the server starts
    url = mlflow_server.wait()
    env = {"MLFLOW_TRACKING_URI": url}
    names = run_queue(project, env=env)
    client = mlflow.MlflowClient(tracking_uri=url)
    runs = client.search_runs([client.get_experiment_by_name("mobiledx").experiment_id])
    assert len(runs) == len(LRS), [r.data.tags.get("dvc_exp_name") for r in runs]  # the server's store is fresh
    assert_one_run_per_experiment(runs, names)
    for found in runs:
        assert len(client.get_metric_history(found.info.run_id, "val_loss")) == 1  # one epoch, logged once
        assert {a.path for a in client.list_artifacts(found.info.run_id, "plots")} == {"plots/training_curves.png"}
    # the server, not the client's repository, holds the artifacts (every client of a team server sees them)
    assert str(project) not in client.get_experiment_by_name("mobiledx").artifact_location
    # nothing went to the repository's own store
    local = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    assert not new_runs(local)

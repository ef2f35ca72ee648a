import os

import pytest

from mobiledx import tracking


def test_queued_experiment_copies_log_to_the_users_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    queued_copy = tmp_path / "project" / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    queued_copy.mkdir(parents=True)
    assert tracking.repository_root(queued_copy) == tmp_path / "project"
    uri = tracking.tracking_uri(queued_copy)
    assert uri == f"sqlite:///{tmp_path / 'project' / 'mlruns' / 'mlflow.db'}"
    assert os.path.isabs(uri.removeprefix("sqlite:///")) or uri.startswith("sqlite:////")


def test_environment_overrides_the_store(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_tags_name_dataset_data_code_and_experiment(monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "lofty-bear")
    tags = tracking.run_tags("demo-skin", "ham10000", "abc123")
    assert tags["dataset"] == "demo-skin" and tags["dataset_kind"] == "ham10000"
    assert tags["raw_data_hash"] == "abc123" and tags["dvc_exp_name"] == "lofty-bear"
    assert len(tags["git_commit"]) in (40, len("unknown"))


def test_one_run_spans_train_evaluate_and_export(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    import mlflow

    with tracking.start_run("demo-blood", tracking.run_tags("demo-blood", "cnmc", "h")) as run:
        mlflow.log_param("lr", 0.001)
        record = tracking.run_record(run)
    assert record["tracking_uri"].endswith("mlruns/mlflow.db")
    (tmp_path / "model.tflite").write_bytes(b"TFL3")
    with tracking.resume_run(record["run_id"]):
        mlflow.log_metric("test_accuracy", 0.9)
        mlflow.log_artifact(str(tmp_path / "model.tflite"), artifact_path="tflite")
    client = mlflow.MlflowClient(tracking_uri=record["tracking_uri"])
    finished = client.get_run(record["run_id"])
    assert finished.data.params["lr"] == "0.001" and finished.data.metrics["test_accuracy"] == pytest.approx(0.9)
    assert finished.data.tags["dataset"] == "demo-blood"
    assert [a.path for a in client.list_artifacts(record["run_id"], "tflite")] == ["tflite/model.tflite"]
    assert (tmp_path / "mlruns" / "artifacts").is_dir()  # artifacts live under mlruns/, next to the DB

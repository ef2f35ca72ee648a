"""MLflow tracking: one run per dataset per pipeline run, shared by train, evaluate and export.

The store is SQLite under ``<repo>/mlruns/`` with an ABSOLUTE URI: ``dvc exp run --queue`` runs
stages in a temporary copy under ``.dvc/tmp/exps/``, and every copy must log to the same store.
``MLFLOW_TRACKING_URI`` (e.g. a team's tracking server) overrides it. MLflow does not carry a run
across processes, so train writes the run id to a small DVC output that later stages resume.
"""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

EXPERIMENT_NAME = "mobiledx"
_QUEUE_MARKER = os.sep + os.path.join(".dvc", "tmp", "exps") + os.sep


def repository_root(start: str | Path | None = None) -> Path:
    """The user's repository root, also when running inside a DVC queued-experiment copy."""
    path = Path(start or os.getcwd()).resolve()
    text = str(path) + os.sep
    if _QUEUE_MARKER in text:
        return Path(text.split(_QUEUE_MARKER, 1)[0])
    return path


def tracking_uri(root: str | Path | None = None) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<repo>/mlruns/mlflow.db``."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    store = repository_root(root) / "mlruns"
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def artifact_root(root: str | Path | None = None) -> str:
    return (repository_root(root) / "mlruns" / "artifacts").as_uri()


def _configure() -> Any:
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


def _experiment_id(mlflow: Any, name: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return mlflow.create_experiment(name, artifact_location=artifact_root())
    except Exception:  # created concurrently by a parallel queued experiment
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_tags(dataset: str, kind: str, raw_hash: str) -> dict[str, str]:
    """Tags that make runs comparable across datasets and traceable to code and data."""
    return {
        "dataset": dataset,
        "dataset_kind": kind,
        "raw_data_hash": raw_hash,
        "git_commit": git_commit(),
        "dvc_exp_name": os.environ.get("DVC_EXP_NAME", "workspace"),
        "dvc_exp_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", ""),
    }


@contextmanager
def start_run(dataset: str, tags: dict[str, str], experiment: str = EXPERIMENT_NAME) -> Iterator[Any]:
    """Start a new MLflow run for ``dataset``; yields the active run."""
    mlflow = _configure()
    experiment_id = _experiment_id(mlflow, os.environ.get("MLFLOW_EXPERIMENT_NAME", experiment))
    run_name = f"{dataset}-{tags.get('dvc_exp_name', 'workspace')}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
        yield run


@contextmanager
def resume_run(run_id: str) -> Iterator[Any]:
    """Re-open the run created by the train stage (its id comes from train's ``run.json`` output)."""
    mlflow = _configure()
    with mlflow.start_run(run_id=run_id) as run:
        yield run


def run_record(run: Any) -> dict[str, str]:
    """What later stages need to find a run again (written to train's ``run.json``)."""
    return {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "tracking_uri": tracking_uri(),
    }


def epoch_logger():
    """A Keras callback logging every epoch's metrics to the active MLflow run."""
    import keras
    import mlflow

    class MlflowEpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if logs:
                mlflow.log_metrics({k: float(v) for k, v in logs.items()}, step=epoch)

    return MlflowEpochLogger()

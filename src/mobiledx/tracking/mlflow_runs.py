"""MLflow tracking: one run per dataset per pipeline run, shared by train, evaluate and export.

The store is SQLite under ``<repo>/mlruns/`` with an ABSOLUTE URI: ``dvc exp run --queue`` runs
stages in a temporary copy under ``.dvc/tmp/exps/``, and every copy must log to the same store.
``MLFLOW_TRACKING_URI`` (e.g. a team's tracking server) overrides it. MLflow does not carry a run
across processes, so train writes the run id to a small DVC output that later stages resume.

Before a run starts, the store is checked (:func:`check_tracking_store`): an unreachable server
fails in seconds with the fix, instead of MLflow's own retries (about 4 minutes) or a failure
after a long training.

Every training run is tagged with what could make it differ from another run of the same code, params
and data (:mod:`mobiledx.tracking.environment`, tags ``env.*``): :func:`run_tags` at the start, then the epoch
logger once ``fit()`` has configured TensorFlow (threads, op determinism). Evaluate and export resume
the run and read them back (:func:`recorded_environment`); they never re-tag it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

from mobiledx.tracking import environment

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


class TrackingUnavailableError(RuntimeError):
    """The MLflow tracking store cannot be reached or written; the message names the URI and the fix."""


HEALTH_TIMEOUT_S = 5.0  # per request
HEALTH_ATTEMPTS = 3  # a server that is just starting gets a couple of quick retries
HEALTH_RETRY_DELAY_S = 1.0
HEALTH_DEADLINE_S = 12.0  # never spend longer than this on the check, whatever the network does


def _redact(uri: str) -> str:
    """``uri`` without a password (``https://user:***@host``), fit for an error message."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _check_server(uri: str, consequence: str) -> None:
    health = uri.rstrip("/") + "/health"
    deadline = time.monotonic() + HEALTH_DEADLINE_S
    reason = "no attempt made"
    for attempt in range(HEALTH_ATTEMPTS):
        timeout = min(HEALTH_TIMEOUT_S, deadline - time.monotonic())
        if timeout <= 0.5:
            break
        try:
            with urllib.request.urlopen(health, timeout=timeout) as response:
                if 200 <= response.status < 300:
                    return
                reason = f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            if error.code in (401, 403):  # reachable; MLflow authenticates with MLFLOW_TRACKING_USERNAME/PASSWORD
                return
            reason = f"HTTP {error.code} {error.reason}"
        except (OSError, ValueError) as error:  # refused, timed out, DNS, TLS, malformed URL
            reason = str(getattr(error, "reason", None) or error) or type(error).__name__
        if attempt + 1 < HEALTH_ATTEMPTS and time.monotonic() + HEALTH_RETRY_DELAY_S < deadline:
            time.sleep(HEALTH_RETRY_DELAY_S)
    shown = _redact(uri)
    raise TrackingUnavailableError(
        f"MLflow tracking server {shown} is not reachable (GET {_redact(health)}: {reason}). "
        f"Start the server (e.g. `mlflow server --host 127.0.0.1 --port 5000`, or check its address, "
        f"network and credentials), or unset MLFLOW_TRACKING_URI to log to this repository's own "
        f"SQLite store (mlruns/mlflow.db).{consequence}"
    )


def _sqlite_database(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (a relative path is from the working directory); None in memory."""
    path = uri.removeprefix("sqlite:///")
    if path in ("", ":memory:") or uri.startswith("sqlite://:memory:"):
        return None
    return Path(path if os.path.isabs(path) else os.path.join(os.getcwd(), path))


def _check_sqlite(uri: str, consequence: str) -> None:
    database = _sqlite_database(uri)
    if database is None:
        return
    folder = database.parent
    problem = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        problem = f"cannot create its folder {folder}: {error.strerror or error}"
    else:
        if not os.access(folder, os.W_OK | os.X_OK):
            problem = f"its folder {folder} is not writable"  # SQLite writes a journal beside the DB
        elif database.exists() and not os.access(database, os.R_OK | os.W_OK):
            problem = f"the database file {database} is not writable"
    if problem:
        raise TrackingUnavailableError(
            f"MLflow tracking store {uri} cannot be written: {problem}. Fix the permissions (or free the "
            f"disk), or set MLFLOW_TRACKING_URI to a writable store or a running server.{consequence}"
        )


def check_tracking_store(uri: str | None = None, consequence: str = "") -> str:
    """Fail fast, with the fix, if runs cannot be logged to ``uri`` (default: :func:`tracking_uri`).

    ``http(s)``: ``GET <uri>/health`` with a 5 s timeout and at most two quick retries (12 s at
    most in all). ``sqlite``: the database's folder must be writable. Other schemes are left to
    MLflow. ``consequence`` is appended to the error message. Returns the URI checked.
    """
    uri = uri or tracking_uri()
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    if scheme in ("http", "https"):
        _check_server(uri, f" {consequence}" if consequence else "")
    elif scheme == "sqlite":
        _check_sqlite(uri, f" {consequence}" if consequence else "")
    return uri


@contextmanager
def _store_lock(database: Path) -> Iterator[None]:
    """An exclusive lock beside a SQLite store, held by one process of this machine at a time."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (parallel first runs are then the user's risk)
        yield
        return
    with open(database.parent / f".{database.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _initialise_sqlite_store(mlflow: Any, uri: str) -> None:
    """Create (or migrate) the SQLite store's tables under a file lock.

    Two processes opening a new store at once (``dvc queue start -j 2`` in a fresh clone, or two
    datasets' train stages in parallel) would both run MLflow's schema migrations and one would fail
    ("table ... already exists"). The first one holding the lock creates the tables; the others
    then find them.
    """
    database = _sqlite_database(uri)
    if database is None:
        return
    with _store_lock(database):
        mlflow.MlflowClient(uri).search_experiments(max_results=1)


def _configure() -> Any:
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:"):
        _initialise_sqlite_store(mlflow, uri)
    return mlflow


# MLflow 3's UI opens an experiment on its GenAI overview (traces, token usage) unless the experiment says it
# holds model training runs: this tag (the UI's own "experiment kind") makes it open on the runs table.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def _experiment_id(mlflow: Any, name: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        # A local store keeps artifacts beside it, in <repo>/mlruns/; a server decides where its artifacts go
        # (e.g. its --artifacts-destination), so that every client sees them.
        local = tracking_uri().startswith("sqlite:")
        try:
            mlflow.create_experiment(name, artifact_location=artifact_root() if local else None)
        except Exception:  # created concurrently by a parallel queued experiment
            if mlflow.get_experiment_by_name(name) is None:
                raise
        experiment = mlflow.get_experiment_by_name(name)
    if experiment.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:  # also experiments made before the tag
        try:
            mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, *EXPERIMENT_KIND)
        except Exception as error:  # queued experiments starting together tag it at once: one write wins
            if mlflow.get_experiment(experiment.experiment_id).tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:
                print(f"mobiledx: note: could not tag MLflow experiment {name!r} as model training ({error}); "
                      f"the UI's Model training view still lists its runs", file=sys.stderr)
    return experiment.experiment_id


def ui_url(base: str) -> str:
    """The MLflow UI at ``base`` opened on the mobiledx experiment's training runs: MLflow 3.17's UI opens an
    experiment on its GenAI overview unless the address asks for the "Model training" view."""
    import mlflow

    experiment = mlflow.MlflowClient(tracking_uri()).get_experiment_by_name(EXPERIMENT_NAME)
    where = f"experiments/{experiment.experiment_id}" if experiment is not None else ""
    return f"{base.rstrip('/')}/#/{where}?workflowType=machine_learning"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_tags(dataset: str, kind: str, raw_hash: str) -> dict[str, str]:
    """Tags that make runs comparable across datasets and traceable to code, data and environment.

    The environment's ``env.*`` tags here leave out TensorFlow's configuration, which the training sets
    later: the epoch logger adds it when training begins (:meth:`EpochMetrics.tag_environment`).
    """
    return {
        "dataset": dataset,
        "dataset_kind": kind,
        "raw_data_hash": raw_hash,
        "git_commit": git_commit(),
        "dvc_exp_name": os.environ.get("DVC_EXP_NAME", "workspace"),
        "dvc_exp_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", ""),
        **environment.tags(environment.describe(tensorflow=False)),
    }


def recorded_environment(run_id: str) -> dict[str, str]:
    """The environment that the training process recorded in run ``run_id`` (its ``env.*`` tags; ``{}``: none)."""
    check_tracking_store()
    mlflow = _configure()
    return environment.from_tags(mlflow.MlflowClient().get_run(run_id).data.tags)


def run_name(dataset: str, tags: dict[str, str]) -> str:
    """``<dataset>/<DVC experiment>`` (``dvc exp run``), else ``<dataset>/workspace@<commit>`` (``dvc repro``)."""
    experiment = tags.get("dvc_exp_name", "workspace")
    if experiment != "workspace":
        return f"{dataset}/{experiment}"
    return f"{dataset}/workspace@{tags.get('git_commit', 'unknown')[:7]}"


SYSTEM_METRICS_INTERVAL_S = 5.0  # MLflow's default is 10 s; MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides


def _record_system_metrics(mlflow: Any) -> None:
    """Sample CPU, memory, disk (and GPU with ``nvidia-ml-py`` installed) into the run, MLflow's own way."""
    if not os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"):
        mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_S)
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no "Started monitoring ..." lines


@contextmanager
def start_run(dataset: str, tags: dict[str, str], experiment: str = EXPERIMENT_NAME,
              system_metrics: bool = False) -> Iterator[Any]:
    """Start a new MLflow run for ``dataset`` named by :func:`run_name`; yields the active run.

    The tracking store is checked first (:func:`check_tracking_store`): the train stage calls this
    before fitting, so an unreachable server stops it in seconds, not after the training.
    ``system_metrics``: record CPU/memory/GPU use while the run is open.
    """
    check_tracking_store(consequence="No run was started (the train stage checks before it fits).")
    mlflow = _configure()
    experiment_id = _experiment_id(mlflow, os.environ.get("MLFLOW_EXPERIMENT_NAME", experiment))
    if system_metrics:
        _record_system_metrics(mlflow)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name(dataset, tags), tags=tags,
                          log_system_metrics=system_metrics or None) as run:
        yield run


@contextmanager
def resume_run(run_id: str, system_metrics: bool = False) -> Iterator[Any]:
    """Re-open the run created by the train stage (its id comes from train's ``run.json`` output)."""
    check_tracking_store()
    mlflow = _configure()
    if system_metrics:
        _record_system_metrics(mlflow)
    with mlflow.start_run(run_id=run_id, log_system_metrics=system_metrics or None) as run:
        yield run


@contextmanager
def training_run(dataset: str, tags: dict[str, str], backup=None) -> Iterator[Any]:
    """The MLflow run of a training, recording system metrics: when resuming an interrupted training (``backup``, a
    ``mobiledx.training.backup.TrainingBackup``), ITS run, so per-epoch metrics continue at the right steps
    and no run is left RUNNING; else a new one."""
    import mlflow

    with ExitStack() as stack:
        run = None
        if backup and backup.run_id:
            try:
                run = stack.enter_context(resume_run(backup.run_id, system_metrics=True))
                print(f"mobiledx: continuing MLflow run {backup.run_id} of the interrupted training", flush=True)
            except Exception as error:  # the run is gone (a new store, another MLFLOW_TRACKING_URI)
                print(f"mobiledx: cannot reopen MLflow run {backup.run_id} ({type(error).__name__}); "
                      f"starting a new run", flush=True)
        if run is None:
            run = stack.enter_context(start_run(dataset, tags, system_metrics=True))
            if backup:
                backup.set_run_id(run.info.run_id)
        if backup:
            client = mlflow.MlflowClient()
            for stale in backup.stale_run_ids:  # runs of interrupted trainings whose backups were dropped
                with suppress(Exception):
                    if client.get_run(stale).info.status == "RUNNING":
                        client.set_terminated(stale, status="KILLED")
            state = backup.latest()  # restored epochs the run lacks (killed before it logged them)
            logged = {metric.step for metric in client.get_metric_history(run.info.run_id, "loss")}
            for row in state["history"] if state else []:
                if row["epoch"] - 1 not in logged:
                    mlflow.log_metrics({k: float(v) for k, v in row.items() if k not in ("epoch", "phase")},
                                       step=row["epoch"] - 1)
        yield run


def run_record(run: Any) -> dict[str, str]:
    """What later stages need to find a run again (written to train's ``run.json``)."""
    return {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "tracking_uri": tracking_uri(),
    }


_EPOCH_LOGGERS: list[Any] = []  # this process's epoch metrics (EpochMetrics), for flush_epoch_metrics()


class EpochMetrics:
    """What an epoch logger (:class:`mobiledx.training.callbacks.MlflowEpochLogger`) sends to the active
    MLflow run: each epoch's metrics (:meth:`add`) and the environment tags (:meth:`tag_environment`).

    A tracking failure during training never stops the training: a warning is printed and the
    epochs' metrics (and the environment tags) are kept (not retried at every epoch: the MLflow client
    itself retries for minutes per call). The stage saves the model and ``history.csv`` first, then
    sends them with :func:`flush_epoch_metrics`, which raises if the store is still unreachable.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[int, dict[str, float]]] = []
        self.pending_tags: dict[str, str] = {}
        self.failed = False
        _EPOCH_LOGGERS.append(self)

    def _send(self, what: str, raise_errors: bool, send, *args, **kwargs) -> bool:
        try:
            send(*args, **kwargs)
        except Exception as error:
            self.failed = True
            if raise_errors:
                raise
            print(f"mobiledx: could not log {what} to MLflow ({_redact(tracking_uri())}): "
                  f"{type(error).__name__}: {str(error)[:300]}; training goes on, they are kept "
                  f"and sent after the model is saved", file=sys.stderr, flush=True)
            return False
        return True

    def flush(self, raise_errors: bool = True) -> None:
        import mlflow

        if self.pending_tags:
            if not self._send("the environment tags", raise_errors, mlflow.set_tags, self.pending_tags):
                return
            self.pending_tags = {}
        while self.pending:
            epoch, metrics = self.pending[0]
            if not self._send(f"epoch {epoch} metrics", raise_errors, mlflow.log_metrics, metrics, step=epoch):
                return
            self.pending.pop(0)

    def tag_environment(self) -> None:
        """Tag the run with :func:`mobiledx.tracking.environment.describe` (``env.*``), read now: call it once
        ``fit()`` has configured TensorFlow (seeds, op determinism, threads)."""
        self.pending_tags = environment.tags(environment.describe())
        if not self.failed:
            self.flush(raise_errors=False)

    def add(self, epoch: int, logs: dict | None) -> None:
        """Log epoch ``epoch``'s metrics (Keras' ``logs``) at step ``epoch``."""
        if logs:
            self.pending.append((epoch, {k: float(v) for k, v in logs.items()}))
        if not self.failed:
            self.flush(raise_errors=False)


def flush_epoch_metrics() -> None:
    """Send the per-epoch metrics that could not be logged during training (see :class:`EpochMetrics`).

    Call it after the model and its metrics are saved: it raises if the store is still unreachable.
    """
    while _EPOCH_LOGGERS:
        _EPOCH_LOGGERS[0].flush()
        _EPOCH_LOGGERS.pop(0)

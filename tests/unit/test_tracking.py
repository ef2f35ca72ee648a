import http.server
import json
import os
import socket
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from mobiledx.tracking import environment, mlflow_runs
from mobiledx.training.callbacks import MlflowEpochLogger


def test_queued_experiment_copies_log_to_the_users_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    queued_copy = tmp_path / "project" / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    queued_copy.mkdir(parents=True)
    assert mlflow_runs.repository_root(queued_copy) == tmp_path / "project"
    uri = mlflow_runs.tracking_uri(queued_copy)
    assert uri == f"sqlite:///{tmp_path / 'project' / 'mlruns' / 'mlflow.db'}"
    assert os.path.isabs(uri.removeprefix("sqlite:///")) or uri.startswith("sqlite:////")


def test_environment_overrides_the_store(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert mlflow_runs.tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_tags_name_dataset_data_code_and_experiment(monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "lofty-bear")
    tags = mlflow_runs.run_tags("demo-skin", "ham10000", "abc123")
    assert tags["dataset"] == "demo-skin" and tags["dataset_kind"] == "ham10000"
    assert tags["raw_data_hash"] == "abc123" and tags["dvc_exp_name"] == "lofty-bear"
    assert len(tags["git_commit"]) in (40, len("unknown"))


def test_tags_record_what_could_make_a_run_differ(monkeypatch, tmp_path):
    import numpy as np

    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    tags = mlflow_runs.run_tags("demo-skin", "ham10000", "abc123")
    assert tags["env.lock_sha256"] == "none"  # no requirements.lock at the project root
    assert tags["env.numpy"] == np.__version__ and tags["env.omp_num_threads"] == "3"
    assert tags["env.cpu_simd"] == environment.cpu_simd() and "," in tags["env.cpu_simd"]
    for key in ("python", "tensorflow", "keras", "mlflow", "platform", "cpu_model", "cpu_count", "onednn"):
        assert tags[f"env.{key}"], key
    assert not any(f"env.{key}" in tags for key in environment.TF_KEYS)  # TF is configured later, by fit()
    (tmp_path / "requirements.lock").write_text("numpy==2.4.6 --hash=sha256:00\n")
    assert mlflow_runs.run_tags("demo-skin", "ham10000", "abc123")["env.lock_sha256"] == environment.lock_sha256()
    assert environment.lock_sha256() != "none"


def test_one_run_spans_train_evaluate_and_export(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    import mlflow

    with mlflow_runs.start_run("demo-blood", mlflow_runs.run_tags("demo-blood", "cnmc", "h")) as run:
        mlflow.log_param("lr", 0.001)
        logger = MlflowEpochLogger()
        logger.on_train_begin()  # fit() has configured TensorFlow: the run gets its full environment
        logger.on_train_begin()  # a second phase: read once
        record = mlflow_runs.run_record(run)
    trained = mlflow_runs.recorded_environment(record["run_id"])
    assert record["tracking_uri"].endswith("mlruns/mlflow.db")
    (tmp_path / "model.tflite").write_bytes(b"TFL3")
    with mlflow_runs.resume_run(record["run_id"]):
        mlflow.log_metric("test_accuracy", 0.9)
        mlflow.log_artifact(str(tmp_path / "model.tflite"), artifact_path="tflite")
    client = mlflow.MlflowClient(tracking_uri=record["tracking_uri"])
    finished = client.get_run(record["run_id"])
    assert finished.data.params["lr"] == "0.001" and finished.data.metrics["test_accuracy"] == pytest.approx(0.9)
    assert finished.data.tags["dataset"] == "demo-blood"
    from tensorflow.python.framework.config import is_op_determinism_enabled

    assert trained["tf_op_determinism"] == str(is_op_determinism_enabled()).lower()
    assert trained["tf_intra_op_threads"] and trained["tf_inter_op_threads"] and trained["numpy"]
    assert mlflow_runs.recorded_environment(record["run_id"]) == trained  # evaluate/export did not re-tag
    assert environment.from_tags(finished.data.tags) == trained
    assert [a.path for a in client.list_artifacts(record["run_id"], "tflite")] == ["tflite/model.tflite"]
    assert (tmp_path / "mlruns" / "artifacts").is_dir()  # artifacts live under mlruns/, next to the DB


# --- the tracking store is checked before a run starts (fail fast, never after a long training) ---


# Far above the check's own deadline (HEALTH_DEADLINE_S, 12 s) and far below MLflow's own retries (minutes):
# only a hang or MLflow's retries trip it, not a slow, loaded machine. How long the check may wait is
# asserted from the waits it asked for (health_check_waits), not from the clock.
HANG_GUARD_S = 60


@pytest.fixture
def health_check_waits(monkeypatch):
    """What the health check allows itself to wait, in seconds: ``requests`` (each GET's timeout) and
    ``pauses`` (between attempts); the requests and pauses still happen."""
    waits = SimpleNamespace(requests=[], pauses=[])
    real_urlopen = urllib.request.urlopen

    def urlopen(url, *args, timeout, **kwargs):
        waits.requests.append(timeout)
        return real_urlopen(url, *args, timeout=timeout, **kwargs)

    def sleep(seconds):
        waits.pauses.append(seconds)
        time.sleep(seconds)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    # tracking's own view of the time module only: other threads' sleeps are not the check's
    monkeypatch.setattr(mlflow_runs, "time", SimpleNamespace(monotonic=time.monotonic, sleep=sleep))
    return waits


@pytest.fixture
def http_server():
    """``start(status)``: a local HTTP server answering every GET with ``status``; returns its URL."""
    servers = []

    def start(status: int) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_unreachable_tracking_server_fails_fast_naming_the_uri_and_the_fix(monkeypatch, tmp_path, refused_port,
                                                                          health_check_waits):
    uri = f"http://127.0.0.1:{refused_port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    with pytest.raises(mlflow_runs.TrackingUnavailableError) as error:
        with mlflow_runs.start_run("demo-skin", {"dataset": "demo-skin"}):
            pytest.fail("a run must not start without a reachable tracking server")
    assert time.monotonic() - started < HANG_GUARD_S
    # decided by the bounded health check (its quick retries), before MLflow's client could retry for minutes
    assert 1 <= len(health_check_waits.requests) <= mlflow_runs.HEALTH_ATTEMPTS
    message = str(error.value)
    assert uri in message and "unset MLFLOW_TRACKING_URI" in message and "mlflow server" in message


def test_a_server_that_never_answers_is_given_up_on_within_seconds(health_check_waits):
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(mlflow_runs.TrackingUnavailableError, match="timed out"):
            mlflow_runs.check_tracking_store(uri)
        assert time.monotonic() - started < HANG_GUARD_S
    # every request timed out: the check gave up after its attempts, having waited no longer than its
    # deadline in all (a load that slows the machine only leaves less time for the last attempt)
    assert 1 <= len(health_check_waits.requests) <= mlflow_runs.HEALTH_ATTEMPTS
    assert all(timeout <= mlflow_runs.HEALTH_TIMEOUT_S for timeout in health_check_waits.requests)
    assert sum(health_check_waits.requests) + sum(health_check_waits.pauses) <= mlflow_runs.HEALTH_DEADLINE_S


def test_health_endpoint_decides(http_server):
    assert mlflow_runs.check_tracking_store(http_server(200)) .startswith("http://127.0.0.1:")
    mlflow_runs.check_tracking_store(http_server(401))  # reachable; credentials are MLflow's business
    with pytest.raises(mlflow_runs.TrackingUnavailableError, match="HTTP 503"):
        mlflow_runs.check_tracking_store(http_server(503))


def test_credentials_are_not_shown_in_the_error(refused_port):
    uri = f"http://alice:s3cret@127.0.0.1:{refused_port}"
    with pytest.raises(mlflow_runs.TrackingUnavailableError) as error:
        mlflow_runs.check_tracking_store(uri)
    assert "s3cret" not in str(error.value) and "alice:***@127.0.0.1" in str(error.value)


def test_unwritable_sqlite_store_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    uri = f"sqlite:///{blocker / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(mlflow_runs.TrackingUnavailableError, match="cannot be written") as error:
        with mlflow_runs.start_run("demo-skin", {}):
            pass
    assert uri in str(error.value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert mlflow_runs.check_tracking_store(mlflow_runs.tracking_uri(tmp_path)).startswith("sqlite:///")


def test_epoch_metrics_survive_a_tracking_outage_during_training(tmp_path, monkeypatch, capsys):
    """A tracking error during fit() warns and keeps the metrics; they are sent once the model is saved."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    # set (not deleted): mlflow.set_tracking_uri exports the variable, monkeypatch then restores it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    monkeypatch.setattr(mlflow_runs, "_EPOCH_LOGGERS", [])
    real_log_metrics = mlflow.log_metrics
    calls = []

    def flaky(metrics, step=None, **kwargs):
        calls.append(step)
        raise mlflow.exceptions.MlflowException("connection refused")

    with mlflow_runs.start_run("demo-skin", {"dataset": "demo-skin"}) as run:
        logger = MlflowEpochLogger()
        monkeypatch.setattr(mlflow, "log_metrics", flaky)
        for epoch in range(3):  # training goes on through the outage
            logger.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_loss": 2.0 / (epoch + 1)})
        assert calls == [0]  # one failed attempt, no per-epoch stall on MLflow's own retries
        assert "could not log epoch 0 metrics" in capsys.readouterr().err
        with pytest.raises(mlflow.exceptions.MlflowException):
            mlflow_runs.flush_epoch_metrics()  # still down: the stage fails, after saving the model
        monkeypatch.setattr(mlflow, "log_metrics", real_log_metrics)
        mlflow_runs.flush_epoch_metrics()  # back: every epoch is logged once
    history = mlflow.MlflowClient(mlflow_runs.tracking_uri()).get_metric_history(run.info.run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == [(0, 2.0), (1, 1.0), (2, pytest.approx(2 / 3))]


def test_environment_tags_survive_a_tracking_outage_at_the_start_of_training(tmp_path, monkeypatch, capsys):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    monkeypatch.setattr(mlflow_runs, "_EPOCH_LOGGERS", [])
    real_set_tags = mlflow.set_tags

    def refused(tags):
        raise mlflow.exceptions.MlflowException("connection refused")

    with mlflow_runs.start_run("demo-skin", {"dataset": "demo-skin"}) as run:
        logger = MlflowEpochLogger()
        monkeypatch.setattr(mlflow, "set_tags", refused)
        logger.on_train_begin()  # training goes on
        logger.on_epoch_end(0, {"loss": 1.0})
        assert "could not log the environment tags" in capsys.readouterr().err
        monkeypatch.setattr(mlflow, "set_tags", real_set_tags)
        mlflow_runs.flush_epoch_metrics()
    recorded = mlflow_runs.recorded_environment(run.info.run_id)
    assert set(environment.TF_KEYS) <= set(recorded) and recorded["lock_sha256"] == "none"
    assert [m.step for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")] == [0]
    without = MlflowEpochLogger(record_environment=False)
    with mlflow_runs.start_run("demo-skin", {"dataset": "demo-skin"}) as other:
        without.on_train_begin()
    assert mlflow_runs.recorded_environment(other.info.run_id) == {}


PARALLEL_RUNS_TIMEOUT = 300  # seconds for each phase (importing, then logging; ~10 s idle): bounds a hang only


def test_parallel_first_runs_create_a_new_store_once(tmp_path):
    """Two queued experiments starting together in a fresh clone both open a store that does not
    exist yet: its tables are created once, under a lock, and both runs are logged."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from mobiledx.tracking import mlflow_runs\n"
        "import mlflow\n"  # imported before the start signal, so that the store opens at the same time
        "Path(f'ready-{sys.argv[1]}').touch()\n"
        "sys.stdin.readline()\n"  # the start signal: one line, sent to every worker at once
        "with mlflow_runs.start_run('demo-skin', {'dataset': 'demo-skin'}) as run:\n"
        "    mlflow.log_param('worker', sys.argv[1])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    workers = [subprocess.Popen([sys.executable, "-c", script, str(i)], cwd=tmp_path, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(3)]
    try:
        # the signal goes out once every worker has imported, however long that takes on a loaded machine
        deadline = time.monotonic() + PARALLEL_RUNS_TIMEOUT
        while not all((tmp_path / f"ready-{i}").exists() for i in range(len(workers))):
            exited = [worker for worker in workers if worker.poll() is not None]
            assert not exited, exited[0].communicate()[0][-2000:]
            assert time.monotonic() < deadline, f"workers not ready after {PARALLEL_RUNS_TIMEOUT}s"
            time.sleep(0.1)
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=PARALLEL_RUNS_TIMEOUT)[0] for worker in workers]
    finally:
        for worker in workers:
            worker.kill()  # a no-op for those that exited
    assert [worker.returncode for worker in workers] == [0, 0, 0], "\n".join(o[-2000:] for o in outputs)
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("mobiledx").experiment_id])
    assert sorted(r.data.params["worker"] for r in runs) == ["0", "1", "2"]


def test_each_split_is_an_mlflow_dataset_whose_digest_follows_its_images():
    import pandas as pd

    from mobiledx.tracking.mlflow_datasets import split_datasets, split_digest

    manifest = pd.DataFrame({"image_id": list("abcdef"), "path": [f"{i}.jpg" for i in "abcdef"],
                             "label": ["mel", "nv"] * 3, "age": [40.0] * 6, "sha256": [c * 64 for c in "123456"]})
    assignment = manifest[["image_id", "label"]].assign(group_id=["g1", "g1", "g2", "g3", "g4", "g5"],
                                                         split=["train"] * 4 + ["val", "test"])
    info = {"raw_hash": "f" * 64, "image_size": 96, "kind": "ham10000"}
    train, val, test = split_datasets("demo-skin", Path("/data/raw/skin"), info, manifest, assignment)
    assert len({train.digest, val.digest, test.digest}) == 3 and len(train.digest) == 12
    assert train.name == "demo-skin" and train.source.to_dict()["uri"] == "/data/raw/skin"
    assert train.profile == {"split": "train", "images": 4, "groups": 3, "images_per_class": {"mel": 2, "nv": 2},
                             "raw_data_sha256": "f" * 64, "image_size": 96, "kind": "ham10000"}
    assert [spec.name for spec in train.schema.inputs] == list(manifest.columns)
    rows = manifest.iloc[:4]
    assert split_digest(rows) == train.digest == split_digest(rows.iloc[::-1])  # order does not matter
    assert split_digest(rows.assign(label=["nv", "nv", "mel", "nv"])) != train.digest  # a relabel does


def test_headline_files_are_keyed_by_dataset_with_rounded_figures(tmp_path):
    from mobiledx.evaluation.headline import write_headline

    figures = write_headline(tmp_path / "headline.json", "demo-skin",
                             {"test_accuracy": 0.912345678, "test_op_sensitivity": None, "epochs_run": 7})
    assert figures == {"test_accuracy": 0.9123, "epochs_run": 7}
    assert json.loads((tmp_path / "headline.json").read_text()) == {"demo-skin": figures}


def test_run_names_say_the_dataset_and_the_dvc_experiment():
    commit = "0123456789ab"
    assert mlflow_runs.run_name("demo-skin", {"dvc_exp_name": "lr-1e-4", "git_commit": commit}) == "demo-skin/lr-1e-4"
    assert mlflow_runs.run_name("demo-skin", {"dvc_exp_name": "workspace", "git_commit": commit}) \
        == "demo-skin/workspace@0123456"


def test_splits_are_logged_again_when_a_concurrent_run_inserted_the_same_dataset_first(monkeypatch):
    """The race seen with `dvc queue start -j 2` on a tracking server: the first call loses the insert (the
    store's own error), the second finds the dataset and logs; any other error is not retried."""
    import mlflow
    import pandas as pd

    from mobiledx.tracking import mlflow_datasets

    monkeypatch.setattr(mlflow_datasets.time, "sleep", lambda seconds: None)
    manifest = pd.DataFrame({"image_id": list("abc"), "label": ["mel", "nv", "nv"], "sha256": [c * 64 for c in "123"]})
    assignment = manifest[["image_id", "label"]].assign(group_id=["g1", "g2", "g3"], split=["train", "val", "test"])
    info = {"raw_hash": "f" * 64, "image_size": 32, "kind": "ham10000"}
    race = mlflow.exceptions.RestException({"error_code": "BAD_REQUEST", "message": (
        "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest")})
    calls = []

    def log_inputs(datasets, contexts, tags_list):
        calls.append(contexts)
        if len(calls) == 1:
            raise race

    monkeypatch.setattr(mlflow, "log_inputs", log_inputs)
    mlflow_datasets.log_split_inputs("demo-skin", Path("/raw"), info, manifest, assignment)
    assert calls == [["train", "val", "test"]] * 2

    def refused(datasets, contexts, tags_list):
        calls.append(contexts)
        raise mlflow.exceptions.MlflowException("API request failed: Connection refused")

    calls.clear()
    monkeypatch.setattr(mlflow, "log_inputs", refused)
    with pytest.raises(mlflow.exceptions.MlflowException, match="Connection refused"):
        mlflow_datasets.log_split_inputs("demo-skin", Path("/raw"), info, manifest, assignment)
    assert len(calls) == 1


TRAIN_SCRIPT = """
import json, numpy as np, mlflow
from mobiledx.tracking import environment
from mobiledx.tracking import mlflow_runs
from mobiledx.training.callbacks import MlflowEpochLogger
from tests.support import CLASSES, SMALL, colour_task, fit_on, training_config
from tensorflow.python.framework.config import is_op_determinism_enabled
import tensorflow as tf

before = is_op_determinism_enabled()
images, labels = colour_task(n=32, size=32)
rows = np.arange(32)
config = training_config(epochs=2, freeze_epochs=1, fine_tune_lr_factor=0.1, bn_calibration_images=0, backbone=SMALL)
with mlflow_runs.start_run("demo-skin", mlflow_runs.run_tags("demo-skin", "ham10000", "h")) as run:
    started = environment.from_tags(mlflow.MlflowClient().get_run(run.info.run_id).data.tags)
    fit_on(config, images, CLASSES, rows[:16], labels[:16], np.ones(16), rows[16:], labels[16:],
           callbacks=[MlflowEpochLogger()])
    mlflow_runs.flush_epoch_metrics()
print(json.dumps({"before": before, "started": started, "recorded": mlflow_runs.recorded_environment(run.info.run_id),
                  "now": environment.tensorflow_config()}))
"""


@pytest.mark.slow
def test_a_training_run_is_tagged_with_tensorflow_as_fit_configured_it(tmp_path):
    """In a fresh process (op determinism off), fit() configures TensorFlow, then the run records it."""
    import subprocess
    import sys

    from tests.support import REPO_ROOT

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", TRAIN_SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["before"] is False
    assert not set(environment.TF_KEYS) & set(result["started"])  # run start: TF not configured yet
    recorded = result["recorded"]
    assert recorded["tf_op_determinism"] == "true"  # read after fit()'s make_deterministic
    assert {key: recorded[key] for key in environment.TF_KEYS} == result["now"]
    assert {k: v for k, v in recorded.items() if k not in environment.TF_KEYS} == result["started"]

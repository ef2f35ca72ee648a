"""Faults a team meets in practice, injected into copies of the built tiny pipeline.

- The MLflow server is down: the train stage stops in seconds, before fitting, naming the URI and
  the fix; a tracking failure AFTER fitting leaves the model and its metrics on disk.
- A DVC output is deleted, overwritten, or its cache object is corrupted: what DVC 3.67 detects
  and how the outputs are rebuilt (`dvc status` clean, md5 equal to dvc.lock).
- A DVC remote: push, lose the whole cache and every output, pull: `dvc repro` has nothing to do.

What DVC 3.67 really does (asserted below):
- `train` is never restored from DVC's run cache, because its `run.json` is a plain `cache: false`
  output (DVC only run-caches stages whose uncached outputs are metrics or plots): a deleted
  `model.keras` makes `dvc repro` RE-TRAIN. `dvc checkout` restores the identical file in a second.
- `evaluate` (uncached outputs are metrics/plots only) is restored from the run cache by
  `dvc repro` ("is cached - skipping run, checking out outputs"), without running.
- DVC trusts a cache object that is still read-only (mode 0444, as DVC leaves them) without
  re-hashing it: a corrupted read-only object is checked out as is (by `dvc repro`'s run-cache
  restore or `dvc checkout`); dvc.lock keeps the good md5 (with the corrupted file's size) and
  `dvc status` stays clean, because DVC records the checked-out file under the expected hash
  without reading it. A cache object that is NOT read-only is
  re-hashed by `dvc status`, reported "not in cache", deleted, and `dvc repro` re-runs its stage.
  So, to verify a cache: `chmod -R u+w .dvc/cache/files && dvc status`, then `dvc repro`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time
from pathlib import Path

import pytest
import yaml

from tests.support.project import copy_project, run, run_unchecked, stages_run

pytestmark = pytest.mark.slow

MODEL = "data/models/demo-skin/model.keras"
CONFUSION = "data/evaluation/demo-skin/confusion_matrix.png"
ROC = "data/evaluation/demo-skin/roc_curves.png"
UP_TO_DATE = "Data and pipelines are up to date."


@pytest.fixture
def project(built_project, tmp_path) -> Path:
    """A private copy of the built pipeline for one test (a second or so to make)."""
    return copy_project(built_project, tmp_path / "project")


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def locked_md5(root: Path, output: str) -> str:
    """The md5 dvc.lock records for ``output`` (as an output of its stage)."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    found = {out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", []) if out["path"] == output}
    assert len(found) == 1, (output, found)
    return found.pop()


def locked_size(root: Path, output: str) -> int:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return next(out["size"] for stage in lock["stages"].values() for out in stage.get("outs", [])
                if out["path"] == output)


def cache_object(root: Path, digest: str) -> Path:
    return root / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]


def overwrite(path: Path, data: bytes) -> None:
    """Write ``data`` into ``path`` in place, keeping its permission bits (DVC cache files are 0444)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    path.chmod(mode | stat.S_IWUSR)
    path.write_bytes(data)
    path.chmod(mode)


def restored_from_run_cache(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if "is cached - skipping run" in line}


def assert_clean(root: Path) -> None:
    status = run(["dvc", "status"], root)
    assert UP_TO_DATE in status, status


# --- MLflow tracking server down ---

# The stage's imports (Python, pandas, MLflow) take seconds idle and can take tens of seconds on a loaded
# machine; MLflow's own retries on a refused connection take about 4 minutes. A hang guard in between.
TRACKING_DOWN_HANG_GUARD_S = 120


def test_train_stage_fails_in_seconds_when_the_tracking_server_is_down(project, refused_port):
    uri = f"http://127.0.0.1:{refused_port}"
    before = {path: (project / path).read_bytes() for path in (MODEL, "data/models/demo-skin/run.json")}
    started = time.monotonic()
    done = run_unchecked(["python", "stages/train.py", "demo-skin"], project, timeout=300,
                         env={"MLFLOW_TRACKING_URI": uri})
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "TrackingUnavailableError" in output and uri in output, output[-3000:]
    assert "unset MLFLOW_TRACKING_URI" in output and "mlflow server" in output
    # given up by the stage's bounded health check (a few quick attempts), not by MLflow's retrying client
    assert f"(GET {uri}/health: " in output and "Connection refused" in output, output[-3000:]
    assert "Epoch 1/" not in output  # stopped before fitting
    assert elapsed < TRACKING_DOWN_HANG_GUARD_S, f"took {elapsed:.1f}s (Python, pandas and MLflow imports included)"
    assert {path: (project / path).read_bytes() for path in before} == before  # nothing overwritten
    assert_clean(project)


def test_tracking_failure_after_training_keeps_the_model_and_its_metrics(project, monkeypatch):
    """MLflow fails during and after fit(): the stage fails, but model.keras, history.csv and
    train_metrics.json are written first; run.json (which later stages resume) is not."""
    import keras
    import mlflow
    import pandas as pd

    from mobiledx.models.inference import load_model
    from mobiledx.pipeline import run_stage
    from mobiledx.pipeline import train as train_stage
    from mobiledx.tracking import mlflow_runs
    from mobiledx.training import loop

    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    # set (not deleted): mlflow.set_tracking_uri exports the variable, monkeypatch then restores it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    monkeypatch.setattr(mlflow_runs, "_EPOCH_LOGGERS", [])
    history = pd.DataFrame({"epoch": [0, 1], "loss": [1.2, 0.9], "accuracy": [0.4, 0.6],
                            "val_loss": [1.1, 1.0], "val_accuracy": [0.5, 0.55], "learning_rate": [1e-3, 1e-3]})

    def fit_then_lose_the_server(config, data, callbacks=(), **kwargs):
        """A stand-in for fit(): a tiny real model; the tracking server goes away during training."""
        def refused(*args, **kwargs):
            raise mlflow.exceptions.MlflowException("API request failed: Connection refused")

        monkeypatch.setattr(mlflow, "log_metrics", refused)
        monkeypatch.setattr(mlflow, "log_artifact", refused)
        for callback in callbacks:
            for row in history.to_dict("records"):
                callback.on_epoch_end(int(row["epoch"]), {k: v for k, v in row.items() if k != "epoch"})
        inputs = keras.Input((data.images.shape[1], data.images.shape[2], 3), name="image")
        pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
        outputs = keras.layers.Dense(len(data.classes), activation="softmax")(pooled)
        return keras.Model(inputs, outputs), history.copy()

    monkeypatch.setattr(loop, "fit", fit_then_lose_the_server)  # the stage imports it after its preflight
    out = project / "data" / "models" / "demo-skin"
    run_json = (out / "run.json").read_bytes()
    for name in ("model.keras", "history.csv", "train_metrics.json"):
        (out / name).unlink()
    with pytest.raises(mlflow.exceptions.MlflowException, match="Connection refused"):
        run_stage(train_stage.train_dataset, "train", argv=["demo-skin"])
    assert load_model(out / "model.keras").output_shape[-1] == len(yaml.safe_load(
        (project / "data/ingested/demo-skin/dataset.json").read_text())["classes"])
    assert pd.read_csv(out / "history.csv")["val_loss"].tolist() == [1.1, 1.0]
    assert yaml.safe_load((out / "train_metrics.json").read_text())["demo-skin"]["epochs_run"] == 2
    assert (out / "run.json").read_bytes() == run_json  # evaluate/export never resume an incomplete run
    runs = mlflow.MlflowClient(mlflow_runs.tracking_uri()).search_runs(
        [mlflow.get_experiment_by_name("mobiledx").experiment_id], order_by=["attributes.start_time DESC"])
    assert runs[0].info.status == "FAILED" and runs[0].data.tags["dataset"] == "demo-skin"


# --- deleted and corrupted outputs, corrupted cache ---


def test_deleted_model_is_reported_and_restored_from_the_cache(project):
    expected = locked_md5(project, MODEL)
    (project / MODEL).unlink()
    status = run(["dvc", "status"], project)
    assert "train@demo-skin" in status and f"deleted:            {MODEL}" in status, status
    # `dvc repro` would re-train: train has no run-cache entry (run.json is a plain uncached output)
    assert "train@demo-skin" in stages_run(run(["dvc", "repro", "--dry", "train@demo-skin"], project))
    run(["dvc", "checkout", MODEL], project)  # the cheap fix: the same bytes, from the cache
    assert md5(project / MODEL) == expected == locked_md5(project, MODEL)
    assert_clean(project)
    assert stages_run(run(["dvc", "repro"], project)) == set()


def test_deleted_and_overwritten_evaluate_outputs_are_rebuilt_from_the_run_cache(project):
    expected = {path: locked_md5(project, path) for path in (CONFUSION, ROC)}
    (project / CONFUSION).unlink()
    (project / ROC).write_bytes(b"not a png any more")
    status = run(["dvc", "status"], project)
    assert f"deleted:            {CONFUSION}" in status and f"modified:           {ROC}" in status, status
    output = run(["dvc", "repro"], project)
    assert restored_from_run_cache(output) == {"evaluate@demo-skin"} and stages_run(output) == set(), output
    assert {path: md5(project / path) for path in expected} == expected
    assert {path: locked_md5(project, path) for path in expected} == expected
    assert_clean(project)


def test_corrupted_read_only_cache_object_is_trusted_by_dvc(project):
    """The real DVC 3.67 behaviour: a read-only cache object is not re-hashed; its corruption spreads."""
    good = locked_md5(project, CONFUSION)
    overwrite(cache_object(project, good), b"corrupted cache object")  # stays read-only, like bit rot
    assert_clean(project)  # not noticed
    (project / CONFUSION).unlink()
    output = run(["dvc", "repro"], project)
    assert restored_from_run_cache(output) == {"evaluate@demo-skin"}, output
    assert (project / CONFUSION).read_bytes() == b"corrupted cache object"
    assert md5(project / CONFUSION) != good == locked_md5(project, CONFUSION)  # the lock still claims the good hash
    assert locked_size(project, CONFUSION) == len(b"corrupted cache object")
    assert_clean(project)  # and DVC believes the workspace matches it


def test_corrupted_cache_object_is_found_by_reverification_and_rebuilt(project):
    """Cache files made writable are re-hashed by `dvc status`: the corrupted one is reported and
    dropped, and `dvc repro` re-runs its stage, giving back the locked bytes."""
    good = locked_md5(project, CONFUSION)
    obj = cache_object(project, good)
    overwrite(obj, obj.read_bytes()[: obj.stat().st_size // 2])  # truncated
    for folder, _, files in os.walk(project / ".dvc" / "cache" / "files"):  # re-verify everything
        for name in files:
            Path(folder, name).chmod(0o644)
    status = run(["dvc", "status"], project)
    assert "evaluate@demo-skin" in status and f"not in cache:       {CONFUSION}" in status, status
    assert not obj.exists()  # DVC deleted the corrupted object
    output = run(["dvc", "repro"], project)
    assert "evaluate@demo-skin" in stages_run(output), output
    assert md5(project / CONFUSION) == good == locked_md5(project, CONFUSION)  # deterministic rebuild
    assert md5(obj) == good and stat.S_IMODE(obj.stat().st_mode) == 0o444  # cached and protected again
    assert_clean(project)


# --- DVC remote ---


def test_push_then_pull_into_an_empty_cache_leaves_nothing_to_reproduce(project, tmp_path):
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "local", remote], project)
    assert "files pushed" in run(["dvc", "push"], project)
    expected = {path: locked_md5(project, path) for path in (MODEL, CONFUSION, "data/split/demo-skin/split.csv")}
    shutil.rmtree(project / ".dvc" / "cache")
    shutil.rmtree(project / "data")
    run(["git", "checkout", "--", "data"], project)  # what a fresh clone has: git-tracked (cache: false) files
    assert not (project / MODEL).exists() and not (project / "data/raw/demo-skin").exists()
    assert UP_TO_DATE not in run(["dvc", "status"], project)
    run(["dvc", "pull"], project)
    assert {path: md5(project / path) for path in expected} == expected
    assert_clean(project)
    output = run(["dvc", "repro"], project)
    assert stages_run(output) == set() and restored_from_run_cache(output) == set(), output

"""tf.distribute (``train.strategy``): MirroredStrategy in-process, MultiWorkerMirroredStrategy with two
worker processes on 127.0.0.1 (``TF_CONFIG``), and the chief/worker roles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from mobiledx.training import distribute
from mobiledx.training.distribute import Cluster
from tests.support import CLASSES, REPO_ROOT, SMALL, colour_task, fit_on, training_config
from tests.support.ports import reserved_ports


def test_mirrored_strategy_trains_with_one_replica_on_cpu(tmp_path):
    import keras

    images, labels = colour_task(32)
    rows = np.arange(32)
    model, history = fit_on(
        training_config(epochs=1, strategy="mirrored", bn_calibration_images=8, backbone=SMALL),
        images,
        CLASSES,
        rows[:24],
        labels[:24],
        np.ones(24),
        rows[24:],
        labels[24:],
    )
    assert list(history["epoch"]) == [1] and np.isfinite(history["val_loss"]).all()
    assert type(model.distribute_strategy).__name__ == "MirroredStrategy"
    model.save(tmp_path / "model.keras")  # what evaluate/export load
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert np.allclose(
        loaded.predict(images[:4].astype(np.float32), verbose=0),
        model.predict(images[:4].astype(np.float32), verbose=0),
        atol=1e-6,
    )


def test_batch_size_must_split_evenly_over_the_replicas(monkeypatch):
    class TwoReplicas:
        num_replicas_in_sync = 2

    monkeypatch.setitem(distribute._STRATEGIES, "mirrored", TwoReplicas())
    images, labels = colour_task(8)
    with pytest.raises(ValueError, match="global batch"):
        fit_on(
            training_config(batch_size=15, strategy="mirrored"),
            images,
            CLASSES,
            np.arange(8),
            labels,
            np.ones(8),
            np.arange(8),
            labels,
        )


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="train.strategy"):
        Cluster.of("parameter_server")


@pytest.mark.parametrize(
    "tf_config, name, chief, workers",
    [
        (None, "chief", True, 1),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, "chief", True, 2),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, "worker-1", False, 2),
        (
            {"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}},
            "worker-0",
            False,
            2,
        ),
        ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, "chief", True, 2),
    ],
)
def test_chief_is_the_chief_task_or_worker_zero(monkeypatch, tf_config, name, chief, workers):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    for strategy in ("default", "mirrored", "multi_worker"):  # the roles only: no strategy is created
        monkeypatch.setitem(distribute._STRATEGIES, strategy, object())
    cluster = Cluster.of("multi_worker")
    assert (cluster.task, cluster.is_chief, cluster.workers) == (name, chief, workers)
    # TF_CONFIG only matters to the multi_worker strategy
    for strategy in ("default", "mirrored"):
        cluster = Cluster.of(strategy)
        assert (cluster.task, cluster.is_chief, cluster.workers) == ("chief", True, 1)


WORKER = textwrap.dedent("""
    import hashlib, json, os, sys
    from pathlib import Path
    from mobiledx.training.distribute import Cluster
    cluster = Cluster.of("multi_worker")  # first, before any other TensorFlow op

    import numpy as np
    import pandas as pd
    from mobiledx.io import atomic_path
    from mobiledx.params import TrainConfig
    from mobiledx.training.distribute import save_worker_copy
    from mobiledx.training.loop import TrainingData, fit
    from mobiledx.training.resume import _common_state_numbers

    out = Path(sys.argv[1])
    # the backup agreement (a collective op): the newest state number both workers hold
    common = _common_state_numbers(cluster, [1, 2] if cluster.is_chief else [2, 3])
    rng = np.random.default_rng(0)
    labels = np.array(["red", "blue"] * 24)
    images = rng.integers(0, 80, (48, 32, 32, 3)).astype(np.uint8)
    images[labels == "red", ..., 0] += 150
    images[labels == "blue", ..., 2] += 150
    config = TrainConfig(lr=1e-3, seed=1, epochs=1, batch_size=16, alpha=0.35, weights="none", bn_momentum=0.9,
                         dense_units=16, dropout=0.0, patience=5, monitor="val_loss", bn_calibration_images=16,
                         augmentation="mobiledx", strategy="multi_worker", backbone="cnn15")
    rows = np.arange(48)
    model, history = fit(config, TrainingData(images, ["red", "blue"], rows[:32], pd.Series(labels[:32]), np.ones(32),
                                              rows[32:], pd.Series(labels[32:])), cluster=cluster)
    if cluster.is_chief:
        with atomic_path(out / "model.keras") as tmp:
            model.save(tmp)
    else:
        save_worker_copy(model)
    digest = hashlib.md5(b"".join(np.asarray(w).tobytes() for w in model.get_weights())).hexdigest()
    (out.parent / f"{cluster.task}.json").write_text(json.dumps({
        "replicas": cluster.strategy.num_replicas_in_sync, "common": common, "weights": digest,
        "epochs": history["epoch"].tolist(), "val_loss": history["val_loss"].tolist()}))
""")


WORKERS_TIMEOUT = 600  # seconds for both workers (17 s with two CPU hogs on 2 cores): bounds a hang only


@pytest.fixture
def cluster_ports():
    """Two ports kept reserved until the test ends: nothing else can take one between our choice and the
    worker's gRPC server binding it (gRPC binds with SO_REUSEADDR, which the reservation lets through)."""
    with reserved_ports(2) as ports:
        yield ports


def test_multi_worker_training_with_two_processes(tmp_path, cluster_ports):
    """Two workers on 127.0.0.1 train one epoch synchronously: both exit 0 with identical weights,
    the chief (worker 0) saved the model, worker 1 wrote nothing to the chief's path."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "outputs" / "model"
    out.mkdir(parents=True)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in cluster_ports]}
    processes = []
    for index in range(2):
        env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": str(REPO_ROOT / "src"),
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        }
        log = open(tmp_path / f"worker-{index}.log", "w")
        processes.append(
            (
                subprocess.Popen(
                    [sys.executable, str(script), str(out)],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                ),
                log,
            )
        )
    deadline = time.monotonic() + WORKERS_TIMEOUT
    try:
        for process, _ in processes:
            process.wait(timeout=max(1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for process, log in processes:
            if process.poll() is None:
                os.killpg(process.pid, 9)
                process.wait()
            log.close()
    logs = {i: (tmp_path / f"worker-{i}.log").read_text()[-3000:] for i in range(2)}
    assert [p.returncode for p, _ in processes] == [0, 0], logs
    chief = json.loads((tmp_path / "outputs" / "chief.json").read_text())
    worker = json.loads((tmp_path / "outputs" / "worker-1.json").read_text())
    assert chief["replicas"] == worker["replicas"] == 2
    assert chief["common"] == worker["common"] == [2]
    assert chief["epochs"] == worker["epochs"] == [1] and chief["val_loss"] == worker["val_loss"]
    assert chief["weights"] == worker["weights"]  # synchronous training: the replicas stay identical
    assert sorted(p.name for p in out.iterdir()) == ["model.keras"]  # written once, by the chief only

    import keras

    assert keras.models.load_model(out / "model.keras").output_shape == (None, 2)

"""A throwaway copy of the pipeline as a git + DVC repository, commands run as DVC runs stages, a real
MLflow server: the helpers of the integration tests and the queue benchmark.

- ``make_project(root, overrides)``: the pipeline with ``overrides`` applied to params.yaml, committed.
- ``copy_project(src, dst)``: a complete, independent copy (git repository, ``.dvc/cache``, the
  outputs, ``mlruns/``); its MLflow store is its own (absolute paths in the database rewritten).
- ``run(args, cwd, timeout=900, env=None)``: runs a command as DVC stages run (the project's
  ``python`` first on PATH, no inherited ``MLFLOW_TRACKING_URI``), asserts success and shows the
  end of the output on failure; ``run_unchecked`` returns the completed process instead, and
  ``run_in_background`` starts a long command that overlaps other tests.
- ``MlflowServer``: a real `mlflow server` on 127.0.0.1 with its own store.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml

from tests.support import REPO_ROOT
from tests.support.ports import reserved_ports

DATASETS = ("demo-skin", "demo-blood")
TINY = {
    "demo": {"skin_images": 120, "blood_subjects": 6, "blood_cells_per_subject": 8, "clinic_images": 40,
             "clinic_shared_images": 8},
    "ingest": {"image_size": 32, "workers": 2},
    "validate": {"min_images_per_class": 2},
    "split": {"test_fraction": 0.25, "val_fraction": 0.2},
    "train": {"epochs": 2, "batch_size": 16, "dense_units": 16, "bn_calibration_images": 32},
    "evaluate": {"bootstrap_samples": 50},
    "export": {"representative_images": 8, "latency_runs": 5},
}
FIRST_REPRO_LOG = "first-repro.log"  # beside the built project, not inside it
OUTPUT_TAIL = 6000  # characters of output shown when a command fails


def stages_run(output: str) -> set[str]:
    """The stages a DVC command's output says it ran (``Running stage '<name>':`` lines)."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def dvc_env(env: dict[str, str | None] | None = None) -> dict[str, str]:
    """The environment DVC stage commands see: this interpreter's ``python`` first on PATH, no
    tracking URI inherited from the caller (each repository logs to its own ``mlruns/``), no
    analytics. ``env`` adds variables; a value of ``None`` removes one."""
    result = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
              "DVC_NO_ANALYTICS": "1", "GX_ANALYTICS_ENABLED": "False", "TF_CPP_MIN_LOG_LEVEL": "2",
              "MLFLOW_DISABLE_TELEMETRY": "true",
              "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"}  # tiny trainings last seconds: sample every second
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        result.pop(name, None)
    for name, value in (env or {}).items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def run_unchecked(args: list[str], cwd: Path, timeout: float = 900,
                  env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess:
    """Run ``args`` in ``cwd`` (stdout and stderr captured as text) and return the result, whatever its
    exit status. On timeout the whole process group is killed and the test fails with the output so far."""
    process = subprocess.Popen([str(a) for a in args], cwd=cwd, env=dvc_env(env), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{' '.join(map(str, args))} still running after {timeout}s in {cwd}:\n"
                    f"{(stdout + stderr)[-OUTPUT_TAIL:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run(args: list[str], cwd: Path, timeout: float = 900, env: dict[str, str | None] | None = None) -> str:
    """Run ``args`` in ``cwd``; assert it succeeds (showing the end of its output if not); return stdout + stderr."""
    done = run_unchecked(args, cwd, timeout=timeout, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, (f"{' '.join(map(str, args))} failed with exit status {done.returncode} "
                                  f"in {cwd}:\n{output[-OUTPUT_TAIL:]}")
    return output


class BackgroundRun:
    """A command started with ``run_in_background``: ``result()`` waits for it like ``run`` does."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str | None] | None = None) -> None:
        self.args, self.cwd = [str(a) for a in args], Path(cwd)
        self._log = tempfile.TemporaryFile("w+")  # a file, not a pipe: nobody reads while it runs
        self._process = subprocess.Popen(self.args, cwd=cwd, env=dvc_env(env), stdout=self._log,
                                         stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def result(self, timeout: float = 900) -> str:
        """Wait for the command; assert it succeeded (showing the end of its output if not); return its output."""
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"{' '.join(self.args)} still running after {timeout}s in {self.cwd}:\n{self._output()}")
        output = self._output()
        assert self._process.returncode == 0, (f"{' '.join(self.args)} failed with exit status "
                                               f"{self._process.returncode} in {self.cwd}:\n{output[-OUTPUT_TAIL:]}")
        return output

    def stop(self) -> None:
        """Kill the command and its children if it is still running."""
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()

    def _output(self) -> str:
        self._log.seek(0)
        return self._log.read()


def run_in_background(args: list[str], cwd: Path, env: dict[str, str | None] | None = None) -> BackgroundRun:
    """Start ``args`` in ``cwd`` as ``run`` would, without waiting: for long DVC commands that can overlap
    other tests on the second core (most stages use one). Call ``.result()`` to wait, ``.stop()`` to kill."""
    return BackgroundRun(args, cwd, env)


def make_project(root: Path, overrides: dict = TINY) -> Path:
    """The pipeline (dvc.yaml, stages/, src/) with ``overrides`` applied to params.yaml, committed in a
    fresh git + DVC repository at ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(REPO_ROOT / name, root / name)
    for folder in ("stages", "src"):
        shutil.copytree(REPO_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    for group, values in overrides.items():
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


def reproduce_datasets_in_parallel(root: Path) -> str:
    """``dvc repro`` of every stage, the datasets' stage chains two at a time; returns all the output.

    The shared stages (``make_demo``) run first; then each dataset's stages run one by one
    (``dvc --wait-for-lock repro -s <stage>@<dataset>``, in dvc.yaml order) in one thread per
    dataset. DVC runs a stage's command without holding the repository lock, and the chains share
    no output, so on 2 cores this takes about half the time of one sequential ``dvc repro`` (whose
    stages mostly use one core). A final plain ``dvc repro`` must then find nothing left to do.
    """
    stages = run(["dvc", "stage", "list", "--name-only"], root).split()
    chains = [[stage for stage in stages if stage.endswith(f"@{dataset}")] for dataset in DATASETS]
    shared = [stage for stage in stages if not any(stage in chain for chain in chains)]
    output = run(["dvc", "repro", *shared], root)

    def reproduce(chain: list[str]) -> str:
        return "".join(run(["dvc", "--wait-for-lock", "repro", "-s", stage], root) for stage in chain)

    with ThreadPoolExecutor(len(chains)) as pool:
        output += "".join(pool.map(reproduce, chains))
    return output + run(["dvc", "repro"], root)


def copy_project(src: Path, dst: Path) -> Path:
    """A complete, independent copy of the repository ``src`` at ``dst`` (which must not exist): git
    history, ``.dvc/cache`` (and run cache), workspace outputs and ``mlruns/``. DVC's scratch folder
    ``.dvc/tmp`` (locks, queue state) is left behind. Returns ``dst``."""
    src, dst = Path(src), Path(dst)
    dvc_tmp = src / ".dvc" / "tmp"
    shutil.copytree(src, dst, symlinks=True,
                    ignore=lambda folder, names: names if Path(folder) == dvc_tmp else [])
    database = dst / "mlruns" / "mlflow.db"
    if database.exists():
        _relocate_mlflow_store(database, str(src), str(dst))
    return dst


def _relocate_mlflow_store(database: Path, old: str, new: str) -> None:
    """Point every absolute path the MLflow database stores (experiment artifact locations, run
    artifact URIs, model-version sources) at the copy, so the copy never writes into ``old``."""
    with sqlite3.connect(database) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for column in connection.execute(f'PRAGMA table_info("{table}")').fetchall():
                name, kind = column[1], (column[2] or "").upper()
                if any(text in kind for text in ("CHAR", "TEXT", "CLOB")):
                    connection.execute(f'UPDATE "{table}" SET "{name}" = REPLACE("{name}", ?, ?) '
                                       f'WHERE instr("{name}", ?) > 0', (old, new, old))
    connection.close()


SERVER_TIMEOUT = 180  # seconds for `mlflow server` to answer: ~10 s idle, bounds a hang on a loaded machine


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 (SQLite store and artifact root under ``folder``, as `make ui`
    runs it), started on construction so that its ~10 s start can overlap other work."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        self.log_path = folder / "mlflow-server.log"
        # held until stop(): no other process can take the port while the server starts (uvicorn binds
        # it with SO_REUSEADDR), so the /health that answers is this server's
        self._port_reservation = ExitStack()
        [port] = self._port_reservation.enter_context(reserved_ports(1))
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
                   "--default-artifact-root", str(folder / "artifacts"), "--workers", "1",
                   "--host", "127.0.0.1", "--port", str(port)]
        with self.log_path.open("w") as log:
            self._process = subprocess.Popen(command, env=dvc_env({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}),
                                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self) -> str:
        """The server's URL, once its /health endpoint answers (the test fails after SERVER_TIMEOUT)."""
        deadline = time.monotonic() + SERVER_TIMEOUT
        while True:
            if self._process.poll() is not None:
                pytest.fail(f"mlflow server exited with {self._process.returncode}:\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self.url
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not answering after {SERVER_TIMEOUT}s:\n{self._log_tail()}")
            time.sleep(0.25)  # polling interval: nothing to wait on but the socket

    def stop(self) -> None:
        """Stop the server and its workers (SIGTERM, then SIGKILL after 15 s)."""
        os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._port_reservation.close()

    def _log_tail(self) -> str:
        return self.log_path.read_text()[-OUTPUT_TAIL:]

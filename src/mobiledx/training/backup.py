"""The training backup: the complete training state, saved crash-safe after every epoch (storage only).

The state (weights, optimizer, the epoch and phase, the history so far, early stopping's best
weights and counters, ReduceLROnPlateau's counters, random-number states) is written to a folder
outside DVC's outputs, ``.dvc/tmp/train-backup/<dataset>/<key>/``. ``<key>`` hashes everything
that determines the training, so a backup is only ever reused by the identical training. What goes
into a state is the callback's work (:class:`mobiledx.training.callbacks.TrainingProgress`); putting
one back into a model is :mod:`mobiledx.training.resume`'s.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import numpy as np

from mobiledx.io import atomic_path, sha256_file, write_json
from mobiledx.tracking.mlflow_runs import repository_root

BACKUP_FOLDER = Path(".dvc") / "tmp" / "train-backup"

def training_key(config, inputs: Iterable[str | os.PathLike], code: Iterable[str | os.PathLike],
                 workers: int = 1) -> str:
    """A hash of everything that determines a training: the training settings (``train`` params, ``lr``
    and ``seed``: a :class:`mobiledx.params.TrainConfig`), the SHA-256 of every input file, the source of
    the ``code`` files (the train stage's import closure, :func:`mobiledx.codedeps.code_closure`), the
    Keras version and the number of workers. Two trainings share a backup only if their keys are equal."""
    description = {
        "params": asdict(config),
        "inputs": {str(path): sha256_file(path) for path in inputs},
        "code": {str(path): sha256_file(path) for path in code},
        "keras": metadata.version("keras"),
        "workers": workers,
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()[:20]


class TrainingBackup:
    """The training state of one training, saved crash-safe after every epoch, in ``directory``.

    Each save writes ``weights-<n>.npz`` (all model weights, BatchNorm statistics included),
    ``optimizer-<n>.npz`` (Adam's moments, step count and learning rate), ``best-<n>.npz`` (early
    stopping's best weights, when they changed) and LAST ``state-<n>.json`` (epoch, phase, history,
    callback counters, which files belong to it), each to a temporary file renamed into place. A
    kill at any moment leaves the previous complete state readable. The two newest states are kept.
    ``run.json`` holds the MLflow run id of the training, so a resumed run logs into the same run.

    A lock (``flock``, released by the OS when the process dies) keeps two live processes from
    sharing one backup.
    """

    KEEP = 2

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = _try_lock(self.directory / "lock")
        if self._lock is None:
            raise BlockingIOError(f"{self.directory} is in use by another training")
        self.stale_run_ids: list[str] = []

    @classmethod
    def for_training(cls, dataset: str, key: str, task: str = "chief",
                     root: str | os.PathLike | None = None) -> TrainingBackup | None:
        """The backup of training ``key`` for ``dataset`` under ``<repo>/.dvc/tmp/train-backup/``
        (``None`` outside a DVC repository, or when a live process of the same training holds it).

        Backups of OTHER keys for ``dataset`` that no live process holds are deleted (an interrupted
        training whose params or data have since changed); their MLflow run ids are kept in
        ``stale_run_ids`` so the caller can mark those runs as killed.
        """
        repo = repository_root(root)
        if not (repo / ".dvc").is_dir():
            return None
        base = repo / BACKUP_FOLDER / dataset
        try:
            backup = cls(base / key / task)
        except BlockingIOError:
            print(f"mobiledx: another process is running this same training ({base / key}); this one "
                  f"runs without a backup", flush=True)
            return None
        backup.stale_run_ids = _remove_stale_backups(base, keep=key)
        return backup

    # MLflow run id -------------------------------------------------------------------------------
    @property
    def run_id(self) -> str | None:
        return _read_run_id(self.directory)

    def set_run_id(self, run_id: str) -> None:
        write_json(self.directory / "run.json", {"run_id": run_id})

    # states --------------------------------------------------------------------------------------
    def _numbers(self) -> list[int]:
        numbers = []
        for path in self.directory.glob("state-*.json"):
            try:
                numbers.append(int(path.stem.split("-", 1)[1]))
            except ValueError:
                continue
        return sorted(numbers)

    def load(self, number: int) -> dict | None:
        """State ``number``, or None if it or a file it names is missing or unreadable."""
        try:
            state = json.loads((self.directory / f"state-{number:06d}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        files = [state.get("weights"), state.get("optimizer"), state.get("best_weights")]
        if not all((self.directory / name).is_file() for name in files if name):
            return None
        return state

    def available(self) -> list[int]:
        """Numbers of the complete states, oldest first."""
        return [number for number in self._numbers() if self.load(number) is not None]

    def latest(self) -> dict | None:
        numbers = self.available()
        return self.load(numbers[-1]) if numbers else None

    def save(self, state: dict, weights: list, optimizer: list | None = None, best_weights: list | None = None) -> int:
        """Write a new state (see the class docstring); returns its number."""
        numbers = self._numbers()
        number = numbers[-1] + 1 if numbers else 1
        previous = self.load(numbers[-1]) if numbers else None
        state = dict(state, number=number, weight_shapes=[list(np.shape(w)) for w in weights])
        state["weights"] = self._write_arrays(f"weights-{number:06d}.npz", weights)
        state["optimizer"] = self._write_arrays(f"optimizer-{number:06d}.npz", optimizer) if optimizer else None
        if best_weights is not None:
            state["best_weights"] = self._write_arrays(f"best-{number:06d}.npz", best_weights)
        else:  # unchanged: the previous state's file (within the same phase)
            same_phase = previous and previous.get("phase") == state.get("phase") and not previous.get("finished")
            state.setdefault("best_weights", previous.get("best_weights") if same_phase else None)
        write_json(self.directory / f"state-{number:06d}.json", state)
        self._prune()
        return number

    def _write_arrays(self, name: str, arrays: list) -> str:
        with atomic_path(self.directory / name) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, *[np.asarray(a) for a in arrays])
        return name

    def read_arrays(self, name: str) -> list[np.ndarray]:
        with np.load(self.directory / name, allow_pickle=False) as data:
            return [data[f"arr_{i}"] for i in range(len(data.files))]

    def _prune(self) -> None:
        keep = self._numbers()[-self.KEEP:]
        wanted = {"lock", "run.json"}
        for number in keep:
            state = self.load(number)
            if state is not None:
                wanted.add(f"state-{number:06d}.json")
                wanted.update(name for name in (state.get("weights"), state.get("optimizer"),
                                                state.get("best_weights")) if name)
        for path in self.directory.iterdir():
            if path.name not in wanted and path.is_file():
                path.unlink(missing_ok=True)

    def clear(self) -> None:
        """Forget every saved state (one that does not fit the model); the lock and ``run.json`` stay."""
        for number in self.available():
            (self.directory / f"state-{number:06d}.json").unlink(missing_ok=True)
        self._prune()

    def remove(self) -> None:
        """Delete the backup (after the stage's outputs are safely written) and release the lock."""
        shutil.rmtree(self.directory, ignore_errors=True)
        key_folder = self.directory.parent
        if key_folder.is_dir() and not any(key_folder.iterdir()):
            key_folder.rmdir()
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

def _read_run_id(folder: Path) -> str | None:
    try:
        return json.loads((folder / "run.json").read_text(encoding="utf-8"))["run_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None

def _try_lock(path: Path) -> int | None:
    """An exclusive, non-blocking ``flock`` on ``path`` (its file descriptor), or None if held elsewhere."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd

def _remove_stale_backups(base: Path, keep: str) -> list[str]:
    """Delete the backups under ``base`` other than ``keep`` that no live process holds; their run ids."""
    run_ids = []
    for folder in base.iterdir() if base.is_dir() else []:
        if folder.name == keep or not folder.is_dir():
            continue
        locks = []
        try:
            for task in folder.iterdir():
                lock = _try_lock(task / "lock") if task.is_dir() else -1
                if lock is None:
                    break  # a live training holds it
                locks.append(lock)
            else:
                run_id = _read_run_id(folder / "chief")
                if run_id:
                    run_ids.append(run_id)
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            for lock in locks:
                if lock >= 0:
                    os.close(lock)
    return run_ids

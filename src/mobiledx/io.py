"""Atomic file output and hashing: every derived file is written to a temp file, then renamed.

Outputs get the permissions any other tool would give them (``0666 & ~umask`` for files, ``0777 &
~umask`` for folders: 0644 / 0755 under the usual umask 022), not the private 0600 / 0700 of the
temporary files they start as, so a team sharing the repository can read them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def current_umask() -> int:
    """This process's umask (read from ``/proc`` where it is shown, else set and restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode a new file (``0666 & ~umask``) or folder (``0777 & ~umask``) gets from ``open`` / ``mkdir``."""
    return (0o777 if directory else 0o666) & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The file has the mode a plain ``open`` would give it (``0666 & ~umask``), not ``mkstemp``'s 0600.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Same extension as the target: some writers (Keras, NumPy) choose the format by extension.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.tmp-", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, default_mode())
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON (made JSON-safe by :func:`jsonable`), atomically."""
    write_text(path, json.dumps(jsonable(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_csv(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame as CSV (no index), atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a NumPy array as ``.npy``, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array)


class NpyWriter:
    """Write a ``.npy`` array block by block, atomically, never holding the whole array in memory.

    ``with NpyWriter(path, row_shape, max_rows) as writer: writer.append(block)`` appends rows of
    ``row_shape`` (a block is ``(n, *row_shape)``); on success the header is rewritten with the
    number of rows actually written and the file renamed onto ``path``. NumPy's header reserves
    room for the first dimension to grow, so the rewritten header has the same length, and the
    bytes equal those of ``np.save`` for the same array. Plain writes (no memory map): written
    pages belong to the page cache, not to this process's resident memory.
    """

    def __init__(self, path: str | os.PathLike, row_shape: tuple[int, ...], max_rows: int, dtype=np.uint8) -> None:
        self.path = Path(path)
        self.row_shape = tuple(int(n) for n in row_shape)
        self.max_rows = int(max_rows)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self._atomic: contextlib.AbstractContextManager | None = None
        self._handle = None

    def _header(self, rows: int) -> dict:
        from numpy.lib import format as npy

        return {"descr": npy.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (rows, *self.row_shape)}

    def __enter__(self) -> NpyWriter:
        from numpy.lib import format as npy

        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._handle = open(tmp, "wb")
        npy.write_array_header_1_0(self._handle, self._header(self.max_rows))
        self._data_offset = self._handle.tell()
        return self

    def append(self, block: np.ndarray) -> None:
        """Append ``block`` (``(n, *row_shape)``, cast to the writer's dtype) after the rows written so far."""
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path.name}: rows of shape {block.shape[1:]}, expected {self.row_shape}")
        if self.rows + len(block) > self.max_rows:
            raise ValueError(f"{self.path.name}: more than the {self.max_rows} rows announced")
        self._handle.write(block.data)
        self.rows += len(block)

    def __exit__(self, kind, error, traceback) -> bool:
        from numpy.lib import format as npy

        rewrite_failure = None
        if error is None:
            try:
                self._handle.seek(0)
                npy.write_array_header_1_0(self._handle, self._header(self.rows))
                if self._handle.tell() != self._data_offset:  # cannot happen while NumPy reserves the room
                    raise RuntimeError(f"{self.path.name}: the rewritten .npy header changed length")
            except BaseException as failure:
                rewrite_failure = failure
                kind, error, traceback = type(failure), failure, failure.__traceback__
        self._handle.close()
        self._atomic.__exit__(kind, error, traceback)  # renames on success, else deletes the temp file
        if rewrite_failure is not None:
            raise rewrite_failure
        return False


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: NaN, infinities and pandas' missing values become ``None``, NumPy
    scalars and arrays Python numbers and lists, tuples lists, paths and any other object their text."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    import pandas as pd

    return None if pd.isna(value) else str(value)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; it replaces ``path`` only if the block succeeds.

    The folder has the mode a plain ``mkdir`` would give it (``0777 & ~umask``), not ``mkdtemp``'s 0700.
    """
    import shutil

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        os.chmod(tmp, default_mode(directory=True))
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)

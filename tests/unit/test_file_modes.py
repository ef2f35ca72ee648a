"""Outputs are readable by a team: files 0666 & ~umask, folders 0777 & ~umask, like any other tool (issue 25)."""

import os
import stat

import numpy as np
import pandas as pd
import pytest

from mobiledx.io import (
    NpyWriter,
    atomic_directory,
    atomic_path,
    current_umask,
    write_bytes,
    write_csv,
    write_json,
    write_npy,
    write_text,
)


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    previous = os.umask(0o022)
    yield set_mask
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def write_every_kind(folder):
    write_json(folder / "run.json", {"run_id": "x"})  # what train, evaluate and validate write
    write_text(folder / "report.md", "# report\n")
    write_csv(folder / "history.csv", pd.DataFrame({"epoch": [0]}))
    write_bytes(folder / "model.tflite", b"\0")
    write_npy(folder / "a.npy", np.zeros(2))
    with NpyWriter(folder / "images.npy", (2,), max_rows=1) as writer:
        writer.append(np.zeros((1, 2)))
    with atomic_path(folder / "model.keras") as tmp:  # a writer that opens the path itself (Keras, plots)
        tmp.write_bytes(b"zip")
    return ["run.json", "report.md", "history.csv", "model.tflite", "a.npy", "images.npy", "model.keras"]


def test_files_get_0644_under_umask_022(tmp_path, umask):
    umask(0o022)
    assert current_umask() == 0o022
    for name in write_every_kind(tmp_path):
        assert mode(tmp_path / name) == 0o644, name


def test_files_follow_a_group_writable_umask(tmp_path, umask):
    umask(0o002)
    for name in write_every_kind(tmp_path):
        assert mode(tmp_path / name) == 0o664, name


def test_a_private_umask_is_respected(tmp_path, umask):
    umask(0o077)
    for name in write_every_kind(tmp_path):
        assert mode(tmp_path / name) == 0o600, name


def test_folders_get_0755_under_umask_022(tmp_path, umask):
    umask(0o022)
    with atomic_directory(tmp_path / "bundle") as tmp:
        (tmp / "labels.txt").write_text("a\n")
    assert mode(tmp_path / "bundle") == 0o755
    assert mode(tmp_path / "bundle" / "labels.txt") == 0o644


def test_replacing_a_file_keeps_the_umask_mode(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "validation.json"
    target.write_text("{}")
    os.chmod(target, 0o600)  # written by an older mobiledx
    write_json(target, {"success": True})
    assert mode(target) == 0o644

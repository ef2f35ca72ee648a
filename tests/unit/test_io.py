import json

import numpy as np
import pytest

from mobiledx.io import atomic_directory, atomic_path, read_json, write_json, write_npy


def test_failed_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{half")
            raise RuntimeError("killed mid-write")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_failed_write_keeps_the_previous_version(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"accuracy": 0.5})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("garbage")
            raise RuntimeError
    assert read_json(target) == {"accuracy": 0.5}


def test_json_handles_numpy_and_npy_round_trips(tmp_path):
    write_json(tmp_path / "m.json", {"n": np.int64(3), "x": np.float32(0.5), "v": np.arange(2)})
    assert json.loads((tmp_path / "m.json").read_text()) == {"n": 3, "x": 0.5, "v": [0, 1]}
    array = np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3)
    write_npy(tmp_path / "a.npy", array)
    assert np.array_equal(np.load(tmp_path / "a.npy"), array)


def test_atomic_directory_replaces_only_on_success(tmp_path):
    target = tmp_path / "raw"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "b.txt").write_text("partial")
            raise RuntimeError
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]


def test_npy_writer_streams_blocks_into_the_bytes_np_save_writes(tmp_path):
    from mobiledx.io import NpyWriter

    array = np.random.default_rng(0).integers(0, 256, (7, 5, 5, 3), dtype=np.uint8)
    with NpyWriter(tmp_path / "a.npy", (5, 5, 3), max_rows=10_000) as writer:
        writer.append(array[:3])
        writer.append(array[3:5])
        assert not (tmp_path / "a.npy").exists()  # renamed into place only when complete
    np.save(tmp_path / "reference.npy", array[:5])
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "reference.npy").read_bytes()
    assert writer.rows == 5


def test_npy_writer_refuses_more_rows_than_announced_and_leaves_nothing(tmp_path):
    from mobiledx.io import NpyWriter

    with pytest.raises(ValueError, match="more than the 2 rows"):
        with NpyWriter(tmp_path / "a.npy", (2, 2, 3), max_rows=2) as writer:
            writer.append(np.zeros((3, 2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match=r"rows of shape \(3, 3, 3\)"):
        with NpyWriter(tmp_path / "b.npy", (2, 2, 3), max_rows=2) as writer:
            writer.append(np.zeros((1, 3, 3, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []

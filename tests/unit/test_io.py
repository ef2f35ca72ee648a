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

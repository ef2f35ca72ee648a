"""Nothing mobiledx reads can run code: model files load in Keras safe mode, data files never go
through pickle, and the MLflow UI is served on the loopback interface only."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.support import REPO_ROOT


def _lambda_model(marker: Path):
    """A model whose Lambda layer writes ``marker`` whenever it is called (also while a model is rebuilt)."""
    import keras

    payload = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).write_text('code ran'), x)[1]")  # noqa: S307
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Lambda(payload, name="payload")(inputs))


def test_keras_file_with_a_lambda_layer_is_refused_without_running_it(tmp_path):
    import keras

    from mobiledx.models.inference import load_model

    marker = tmp_path / "pwned.txt"
    _lambda_model(marker).save(tmp_path / "evil.keras")
    marker.unlink(missing_ok=True)  # building the model may have run the payload; only loading counts
    with pytest.raises(ValueError, match="safe_mode"):
        load_model(tmp_path / "evil.keras")
    assert not marker.exists()
    # the payload is real: Keras' unsafe mode would have run it
    keras.models.load_model(tmp_path / "evil.keras", safe_mode=False)
    assert marker.read_text() == "code ran"


def test_keras_file_naming_an_unregistered_class_is_refused_without_importing_its_module(tmp_path, monkeypatch):
    import keras

    from mobiledx.models.inference import load_model

    marker = tmp_path / "imported.txt"
    (tmp_path / "evil_layers.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('module imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs)).save(tmp_path / "plain.keras")
    with zipfile.ZipFile(tmp_path / "plain.keras") as source:
        files = {name: source.read(name) for name in source.namelist()}
    config = json.loads(files["config.json"])
    dense = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
    dense.update({"class_name": "EvilLayer", "module": "evil_layers", "registered_name": "evil_layers>EvilLayer"})
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "evil.keras", "w") as target:
        for name, data in files.items():
            target.writestr(name, data)
    with pytest.raises((TypeError, ValueError), match="EvilLayer"):
        load_model(tmp_path / "evil.keras")
    assert not marker.exists() and "evil_layers" not in sys.modules


def _np_load_calls(folder: Path):
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in ("np", "numpy"):
                yield f"{path.relative_to(REPO_ROOT)}:{node.lineno}", node


def test_every_np_load_refuses_pickles_explicitly():
    calls = [found for folder in ("src", "stages", "benchmarks") for found in _np_load_calls(REPO_ROOT / folder)]
    assert calls, "expected np.load calls in src/ and stages/"
    unsafe = [where for where, node in calls
              if not any(k.arg == "allow_pickle" and isinstance(k.value, ast.Constant) and k.value.value is False
                         for k in node.keywords)]
    assert unsafe == [], f"np.load without allow_pickle=False: {unsafe}"
    source = "\n".join(p.read_text() for folder in ("src", "stages") for p in (REPO_ROOT / folder).rglob("*.py"))
    assert not re.search(r"\bimport pickle\b|\bpickle\.loads?\(|read_pickle|joblib\.load|dill\.|cloudpickle", source)


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).write_text, ("code ran",))


def test_a_pickled_images_npy_is_refused(tmp_path):
    from mobiledx.data.cache import load_ingested
    from mobiledx.data.manifest import MANIFEST_COLUMNS
    from mobiledx.paths import DatasetPaths

    marker = tmp_path / "pwned.txt"
    paths = DatasetPaths("demo-skin", root=tmp_path)
    paths.ingested.mkdir(parents=True)
    np.save(paths.ingested / "images.npy", np.array([_Payload(str(marker))], dtype=object), allow_pickle=True)
    (paths.ingested / "dataset.json").write_text("{}")
    (paths.ingested / "manifest.csv").write_text(",".join(MANIFEST_COLUMNS) + "\n")
    with pytest.raises(ValueError, match="allow_pickle"):
        load_ingested(paths)
    assert not marker.exists()


def _ui_command() -> str:
    if shutil.which("make"):
        done = subprocess.run(["make", "-n", "ui"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
    else:  # no make: read the recipe of the ui target
        text = (REPO_ROOT / "Makefile").read_text()
        lines = re.search(r"^ui:.*\n((?:\t.*\n?)+)", text, re.M).group(1).splitlines()
    commands = [line for line in lines if re.search(r"\bmlflow (ui|server)\b", line)]
    assert len(commands) == 1, lines
    return commands[0]


def test_make_ui_serves_mlflow_on_loopback_only():
    command = _ui_command()
    hosts = re.findall(r"(?:--host|-h)[ =](\S+)", command)
    assert hosts == ["127.0.0.1"], command
    assert "0.0.0.0" not in command and "--allowed-hosts" not in command

"""Model registry and the `mobiledx` CLI (release, predict, compare) on a throwaway MLflow store.

A tiny real Keras model is converted to .tflite (float32 and int8) and logged, as the export
stage does, under `tflite/` of FINISHED runs of two datasets and as their logged model (the
pyfunc), plus a FAILED run that must never be picked. The SQLite store is built once; every test gets
its own copy of the database (the run artifacts are only read), so tests do not depend on each other's
registry changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobiledx import cli
from mobiledx.paths import DatasetPaths
from mobiledx.tracking import comparison, model_registry
from tests.support import REPO_ROOT

SKIN_LABELS = ["akiec", "bcc", "nv"]
THRESHOLD = 0.4  # each model card's operating point: refer when p(class of interest) >= 0.4


def operating_point(class_name: str) -> dict:
    """The operating point as modelcard.build_model_card writes it into model_card.json."""
    return {"class": class_name, "target_metric": "sensitivity", "target_value": 0.9, "target": "sensitivity >= 0.9",
            "threshold": THRESHOLD,
            "rule": f"refer when p({class_name}) >= 0.4 (chosen for sensitivity >= 0.9 on the validation split)"}

BLOOD_LABELS = ["all", "hem", "other"]
VARIANTS = ("float32", "float16", "dynamic_range", "int8")
# (name, dataset, start offset s, status, metrics): later offset = more recent run
RUNS = [
    (
        "skin-old",
        "skin",
        0,
        "FINISHED",
        {
            "val_balanced_accuracy": 0.70,
            "test_accuracy": 0.70,
            "test_balanced_accuracy": 0.80,
            "test_roc_auc_macro": 0.91,
            "tflite_int8_latency_ms_1_thread": 1.25,
            "tflite_int8_accuracy": 0.69,
        },
    ),
    (
        "skin-new",
        "skin",
        10,
        "FINISHED",
        {
            "val_balanced_accuracy": 0.75,
            "test_accuracy": 0.90,
            "test_balanced_accuracy": 0.60,
            "test_roc_auc_macro": 0.85,
            "tflite_int8_latency_ms_1_thread": 1.5,
            "tflite_int8_accuracy": 0.88,
        },
    ),
    ("skin-failed", "skin", 20, "FAILED", {"test_accuracy": 0.99, "test_balanced_accuracy": 0.99}),
    (
        "blood-old",
        "blood",
        0,
        "FINISHED",
        {
            "val_balanced_accuracy": 0.72,
            "test_accuracy": 0.75,
            "test_balanced_accuracy": 0.74,
            "test_roc_auc_macro": 0.80,
            "tflite_int8_latency_ms_1_thread": 2.0,
            "tflite_int8_accuracy": 0.72,
        },
    ),
    (
        "blood-new",
        "blood",
        10,
        "FINISHED",
        {
            "val_balanced_accuracy": 0.68,
            "test_accuracy": 0.65,
            "test_balanced_accuracy": 0.66,
            "test_roc_auc_macro": 0.70,
            "tflite_int8_latency_ms_1_thread": 3.0,
            "tflite_int8_accuracy": 0.64,
        },
    ),
]


@pytest.fixture(scope="module")
def flatbuffers() -> dict[str, bytes]:
    """Real .tflite files: the project's classifier in float32, and a small int8 model as int8.

    Converting the MobileNet classifier to int8 too costs ~20 s on a busy 2-core machine; a tiny
    3-class conv net gives an int8 file (different bytes, int8 inside, float32 I/O) in ~2 s. float16
    and dynamic_range reuse the float32 bytes.
    """
    import keras

    from mobiledx.models import build_classifier
    from mobiledx.tflite.conversion import convert

    model = build_classifier(num_classes=3, image_size=32, alpha=0.35, weights="none", dense_units=8)
    float32 = convert(model, "float32")
    image = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(image)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x))
    tiny = keras.Model(image, keras.layers.Dense(3, activation="softmax")(x))
    calibration = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype(np.float32)
    return {
        "float32": float32,
        "float16": float32,
        "dynamic_range": float32,
        "int8": convert(tiny, "int8", representative=calibration),
    }


def log_model_of(run_id: str, paths, example: np.ndarray, metadata_example: np.ndarray | None = None) -> None:
    """Log the bundle in ``paths.export`` as the run's logged model, with its files' SHA-256 tags, as export does."""
    import mlflow

    from mobiledx.tracking.mlflow_model import log_bundle_model

    hashes = {f"sha256.{f.name}": hashlib.sha256(f.read_bytes()).hexdigest() for f in paths.export.iterdir()}
    with mlflow.start_run(run_id=run_id):
        log_bundle_model(paths, example=example, metadata_example=metadata_example, num_classes=3,
                         default_variant="int8", metrics={}, tags=hashes)


@pytest.fixture(scope="module")
def template(tmp_path_factory, flatbuffers):
    """A store with the runs of RUNS; returns (folder, {run name: run id})."""
    root = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        mp.chdir(root)
        from mlflow.entities import Metric, RunTag

        from mobiledx.tracking import mlflow_runs

        client = model_registry.client()
        experiment = client.create_experiment(mlflow_runs.EXPERIMENT_NAME,
                                              artifact_location=mlflow_runs.artifact_root())
        ids = {}
        for name, dataset, offset, status, metrics in RUNS:
            paths = DatasetPaths(name, root=root / "bundles")
            bundle = paths.export
            bundle.mkdir(parents=True)
            for variant, data in flatbuffers.items():
                (bundle / f"model_{variant}.tflite").write_bytes(data)
            labels = SKIN_LABELS if dataset == "skin" else BLOOD_LABELS
            (bundle / "labels.txt").write_text("\n".join(labels) + "\n")
            (bundle / "model_card.md").write_text(f"# {dataset} model card\n")
            card = {"dataset": dataset, "operating_point": operating_point(labels[-1]),
                    "calibration": {"method": "temperature", "applied": True, "temperature": 1.25}}
            (bundle / "model_card.json").write_text(json.dumps(card))
            start = 1_700_000_000_000 + offset * 1000
            run = client.create_run(experiment, start_time=start, tags={"dataset": dataset}, run_name=name)
            sizes = {f"tflite_{v}_size_bytes": float(len(flatbuffers[v])) for v in VARIANTS}
            client.log_batch(
                run.info.run_id,
                metrics=[Metric(k, v, start, 0) for k, v in {**metrics, **sizes}.items()],
                tags=[RunTag("git_commit", "abc123")],
            )
            client.log_artifacts(run.info.run_id, str(bundle), "tflite")
            log_model_of(run.info.run_id, paths, np.zeros((1, 32, 32, 3), np.uint8))
            client.set_terminated(run.info.run_id, status, end_time=start + 500)
            ids[name] = run.info.run_id
        # a finished run whose export never happened: no tflite/ bundle
        bare = client.create_run(
            experiment, start_time=1_700_000_000_000, tags={"dataset": "skin"}, run_name="skin-bare"
        )
        client.set_terminated(bare.info.run_id, "FINISHED")
        ids["skin-bare"] = bare.info.run_id
    return root, ids


@pytest.fixture
def store(template, tmp_path, monkeypatch):
    """This test's own copy of the template database; cwd is tmp_path (compare logs its artifacts there)."""
    root, ids = template
    shutil.copyfile(root / "mlflow.db", tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    return ids


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def run_artifact(run_id: str, name: str, dst: Path) -> bytes:
    return Path(model_registry.client().download_artifacts(run_id, f"tflite/{name}", str(dst))).read_bytes()


# --------------------------------------------------------------------------- registry


def test_register_run_is_idempotent_and_versions_the_runs_logged_model(store, flatbuffers):
    client = model_registry.client()
    first = model_registry.register_run(store["skin-old"], "skin")
    again = model_registry.register_run(store["skin-old"], "skin")
    assert int(first.version) == int(again.version) == 1
    model = model_registry.logged_model(store["skin-old"])
    assert first.source == f"models:/{model.model_id}" and first.run_id == store["skin-old"]
    assert len(client.search_model_versions("name = 'skin'")) == 1
    assert first.tags["variants"] == "dynamic_range,float16,float32,int8"
    assert first.tags["sha256.model_int8.tflite"] == hashlib.sha256(flatbuffers["int8"]).hexdigest()
    second = model_registry.register_run(store["skin-new"])  # dataset taken from the run's tag
    assert int(second.version) == 2 and second.name == "skin"
    assert client.get_registered_model("skin").tags["dataset"] == "skin"

    with pytest.raises(model_registry.RegistryError, match="belongs to dataset 'skin', not 'blood'"):
        model_registry.register_run(store["skin-old"], "blood")
    with pytest.raises(model_registry.RegistryError, match="no complete tflite/ bundle.*export stage"):
        model_registry.register_run(store["skin-bare"], "skin")
    with pytest.raises(model_registry.RegistryError, match="no MLflow run with id"):
        model_registry.register_run("0" * 32, "skin")
    assert len(client.search_model_versions("name = 'skin'")) == 2


def test_best_and_latest_run_only_consider_finished_runs_of_the_dataset(store):
    # the FAILED run with 0.99 is ignored
    assert model_registry.best_run("skin", "test_balanced_accuracy").info.run_id == store["skin-old"]
    assert model_registry.best_run("skin", "test_accuracy").info.run_id == store["skin-new"]
    fastest = model_registry.best_run("skin", "tflite_int8_latency_ms_1_thread", minimize=True)
    assert fastest.info.run_id == store["skin-old"]
    assert model_registry.latest_run("skin").info.run_id == store["skin-new"]
    assert model_registry.latest_run("blood").info.run_id == store["blood-new"]
    assert model_registry.datasets() == ["blood", "skin"]
    with pytest.raises(model_registry.RegistryError, match="Did you mean test_balanced_accuracy"):
        model_registry.best_run("skin", "test_balanced_acc")
    with pytest.raises(model_registry.RegistryError, match="dataset='derm'.*Datasets with finished runs: blood, skin"):
        model_registry.latest_run("derm")


def test_set_champion_and_download_bundle(store, tmp_path, flatbuffers):
    with pytest.raises(model_registry.RegistryError, match="no version with alias 'champion'.*mobiledx release skin"):
        model_registry.model_version("skin")
    version = model_registry.set_champion("skin", store["skin-new"], variant="float32")
    client = model_registry.client()
    alias = client.get_model_version_by_alias("skin", "champion")
    assert alias.run_id == store["skin-new"] and alias.version == version.version
    assert alias.tags["release_variant"] == "float32"
    found, folder = model_registry.download_bundle("skin", tmp_path / "dl", files=["model_int8.tflite", "labels.txt"])
    assert found.version == version.version
    assert sorted(p.name for p in folder.iterdir()) == ["labels.txt", "model_int8.tflite"]
    assert (folder / "model_int8.tflite").read_bytes() == flatbuffers["int8"]
    assert (folder / "labels.txt").read_text().split() == SKIN_LABELS

    # a bundle file changed after registration is refused, naming both hashes
    (folder / "model_int8.tflite").write_bytes(b"tampered")
    with pytest.raises(model_registry.RegistryError, match="changed after registration"):
        model_registry.verify_files(found, folder, ["model_int8.tflite"])


# --------------------------------------------------------------------------- release


def test_release_best_sets_champion_and_writes_the_runs_files(store, capsys, tmp_path, flatbuffers):
    out = tmp_path / "release"
    code, stdout, _ = run_cli(capsys, "release", "skin", "--best", "val_balanced_accuracy", "--output", str(out))
    assert code == 0, stdout
    chosen = store["skin-new"]
    folder = out / "skin"
    assert sorted(p.name for p in folder.iterdir()) == [
        "labels.txt",
        "model.tflite",
        "model_card.json",
        "model_card.md",
        "release.json",
    ]
    assert [p.name for p in out.iterdir()] == ["skin"]  # no temp folder left behind
    model = (folder / "model.tflite").read_bytes()
    assert model == run_artifact(chosen, "model_int8.tflite", tmp_path / "check") == flatbuffers["int8"]
    assert (folder / "labels.txt").read_text().split() == SKIN_LABELS
    card = (folder / "model_card.md").read_text()
    assert card.startswith("# skin model card\n\n> **Release selection.** Chosen for release: highest "
                           "val_balanced_accuracy among finished runs.")

    manifest = json.loads((folder / "release.json").read_text())
    alias = model_registry.client().get_model_version_by_alias("skin", "champion")
    assert alias.run_id == chosen and alias.tags["release_variant"] == "int8"
    assert manifest["run_id"] == chosen and manifest["version"] == int(alias.version)
    assert manifest["variant"] == "int8" and manifest["file"] == "model.tflite"
    assert manifest["sha256"] == hashlib.sha256(model).hexdigest() and manifest["size_bytes"] == len(model)
    assert manifest["metric"] == "val_balanced_accuracy" and manifest["metric_value"] == pytest.approx(0.75)
    assert manifest["selected_on_test"] is False
    assert manifest["metrics"]["test_accuracy"] == pytest.approx(0.90)
    assert manifest["operating_point"]["threshold"] == THRESHOLD and manifest["operating_point"]["class"] == "nv"
    assert manifest["labels"] == SKIN_LABELS and manifest["input_size"] == 32 and manifest["input_dtype"] == "float32"
    assert chosen in stdout and "champion" in stdout and "refer when p(nv) >= 0.4" in stdout

    # releasing another run and variant moves the alias and replaces the folder
    code, _, _ = run_cli(
        capsys, "release", "skin", "--run-id", store["skin-old"], "--variant", "float32", "--output", str(out)
    )
    assert code == 0
    assert model_registry.client().get_model_version_by_alias("skin", "champion").run_id == store["skin-old"]
    assert (folder / "model.tflite").read_bytes() == flatbuffers["float32"]
    assert json.loads((folder / "release.json").read_text())["metric"] is None
    assert len(model_registry.client().search_model_versions("name = 'skin'")) == 2


def test_release_without_a_selector_writes_the_version_marked_champion_in_the_registry(store, capsys, tmp_path):
    """The UI flow: a user sets the alias on a version in the registry (MlflowClient, as the UI does), then
    `mobiledx release <dataset>` writes exactly that version, its files checked against the registry's hashes."""
    client = model_registry.client()
    older = model_registry.register_run(store["skin-old"], "skin")
    model_registry.register_run(store["skin-new"], "skin")
    client.set_registered_model_alias("skin", "champion", older.version)
    code, stdout, stderr = run_cli(capsys, "release", "skin", "--output", str(tmp_path / "release"))
    assert code == 0, stderr
    manifest = json.loads((tmp_path / "release" / "skin" / "release.json").read_text())
    assert manifest["version"] == int(older.version) and manifest["run_id"] == store["skin-old"]
    assert manifest["selection"].startswith(f"version {older.version} carries the alias 'champion'")
    assert manifest["sha256_verified_against"] == f"version {older.version} of 'skin'"
    assert f"version {older.version} of 'skin'" in stdout and store["skin-old"] in stdout
    assert client.get_model_version_by_alias("skin", "champion").version == older.version  # unchanged


def test_choosing_on_a_test_metric_needs_the_flag_and_is_recorded(store, capsys, tmp_path):
    out = tmp_path / "release"
    code, _, stderr = run_cli(capsys, "release", "skin", "--best", "test_balanced_accuracy", "--output", str(out))
    assert code == 2 and "--select-on-test" in stderr and "val_balanced_accuracy" in stderr
    assert not out.exists()
    code, _, stderr = run_cli(capsys, "compare", "--best", "test_accuracy", "--no-log")
    assert code == 2 and "--select-on-test" in stderr

    code, _, stderr = run_cli(capsys, "release", "skin", "--best", "test_balanced_accuracy", "--select-on-test",
                              "--output", str(out))
    assert code == 0 and "warning: test_balanced_accuracy is a test-split metric" in stderr
    manifest = json.loads((out / "skin" / "release.json").read_text())
    assert manifest["selected_on_test"] is True and manifest["run_id"] == store["skin-old"]
    assert "test figures are optimistic" in manifest["selection"]
    card = json.loads((out / "skin" / "model_card.json").read_text())
    assert card["selection"] == "Selected on the TEST set (test_balanced_accuracy): its test figures are optimistic."
    assert "Selected on the TEST set" in (out / "skin" / "model_card.md").read_text()


def test_release_over_seeds_records_the_configurations_spread_and_the_seed(store, capsys, tmp_path):
    """skin-old and skin-new become seeds 0 and 1 of one configuration: the configuration's mean over seeds
    ranks it, its best seed's run (skin-new) is released, and release.json and the model card say so."""
    client = model_registry.client()
    for name, seed in (("skin-old", "0"), ("skin-new", "1")):
        for key, value in {"lr": "0.001", "seed": seed, "train.backbone": "mobilenetv2", "split.fold": "0"}.items():
            client.log_param(store[name], key, value)
    out = tmp_path / "release"
    code, stdout, stderr = run_cli(capsys, "release", "skin", "--best", "val_balanced_accuracy", "--over-seeds",
                                   "--output", str(out))
    assert code == 0, stderr
    manifest = json.loads((out / "skin" / "release.json").read_text())
    chosen_by = ("best mean val_balanced_accuracy over 2 seeds (0.725 ± 0.035 [0.700, 0.750]) among 1 "
                 "configuration(s) with 2 or more seeds; run of seed 1 (val_balanced_accuracy 0.750, its "
                 "configuration's best seed)")
    assert manifest["run_id"] == store["skin-new"] and manifest["selection"] == chosen_by
    seeds = manifest["over_seeds"]
    assert seeds["chosen_by"] == chosen_by and seeds["seed"] == "1" and seeds["n"] == 2
    assert seeds["runs"] == {"0": store["skin-old"], "1": store["skin-new"]}
    assert seeds["mean"] == pytest.approx(0.725) and seeds["values"] == {"0": 0.70, "1": 0.75}
    assert f"chosen by: {chosen_by}" in stdout
    assert f"Chosen for release: {chosen_by}." in (out / "skin" / "model_card.md").read_text()

    code, _, stderr = run_cli(capsys, "release", "blood", "--best", "val_balanced_accuracy", "--over-seeds")
    assert code == 2 and "no configuration of blood has runs of 2 or more seeds" in stderr
    assert "dvc exp run --queue -S seed=0,1,2,3,4 && dvc queue start" in stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["release", "skin", "--best", "val_balanced_acc"], "Did you mean val_balanced_accuracy"),
        (["release", "derm", "--best", "val_balanced_accuracy"], "no finished MLflow run tagged dataset='derm'"),
        (["release", "skin", "--best", "val_balanced_accuracy", "--variant", "float8"], "lacks model_float8.tflite"),
        (["release", "skin"], "no version with alias 'champion'"),
        (["release", "blood", "--run-id", "SKIN_OLD"], "belongs to dataset 'skin'"),
        (["release", "skin", "--run-id", "SKIN_FAILED"], "is FAILED, not FINISHED"),
        (["release", "skin", "--run-id", "SKIN_BARE"], "no complete tflite/ bundle"),
        (["predict", "x.png", "--dataset", "skin"], "mobiledx release skin"),
        (["compare", "--best", "no_such_metric"], "logged metric 'no_such_metric'"),
    ],
)
def test_errors_are_one_line_with_status_2(store, capsys, tmp_path, argv, message):
    ids = {"SKIN_OLD": store["skin-old"], "SKIN_FAILED": store["skin-failed"], "SKIN_BARE": store["skin-bare"]}
    argv = [ids.get(a, a) for a in argv] + (["--output", str(tmp_path / "rel")] if argv[0] == "release" else [])
    code, stdout, stderr = run_cli(capsys, *argv)
    assert code == 2
    assert message in stderr and stderr.startswith("mobiledx: error: ") and stderr.count("\n") == 1
    assert not (tmp_path / "rel").exists()  # nothing written on failure


# --------------------------------------------------------------------------- predict


DECISION = re.compile(r"\s+(\S+) ([\d.]+) % (>=|<) ([\d.]+) %: (refer|below the referral threshold)")


def parse_predictions(stdout: str) -> dict[str, list[tuple[str, float]]]:
    """Image -> its ranked (class, %) lines; operating-point decision lines are left to ``parse_decisions``."""
    result, current = {}, None
    for line in stdout.splitlines():
        ranked = re.fullmatch(r"\s+(\d+)\. (\S+)\s+([\d.]+) %", line)
        if ranked:
            result[current].append((ranked[2], float(ranked[3])))
        elif not DECISION.fullmatch(line):
            current = line
            result[current] = []
    return result


def parse_decisions(stdout: str) -> dict[str, tuple[str, float, str]]:
    """Image -> (class of interest, its %, decision) from the operating-point line under it."""
    result, current = {}, None
    for line in stdout.splitlines():
        if decision := DECISION.fullmatch(line):
            result[current] = (decision[1], float(decision[2]), decision[5])
        elif not line.startswith(" "):
            current = line
    return result


def write_images(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for i, size in enumerate([(48, 40), (32, 32)]):  # one needs resizing
        path = folder / f"lesion_{i}.png"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def expected_probabilities(model: bytes, path: Path) -> np.ndarray:
    from mobiledx.data.images import load_image
    from mobiledx.tflite.conversion import TFLiteClassifier

    classifier = TFLiteClassifier(model)
    return classifier.predict(load_image(path, classifier.image_size)[None])[0]


def check_ranking(ranked: list[tuple[str, float]], probabilities: np.ndarray, labels: list[str], k: int) -> None:
    assert len(ranked) == k
    percentages = [p for _, p in ranked]
    assert percentages == sorted(percentages, reverse=True)
    for label, pct in ranked:
        assert pct == pytest.approx(100 * probabilities[labels.index(label)], abs=0.051)
    left_out = [100 * p for i, p in enumerate(probabilities) if labels[i] not in {lab for lab, _ in ranked}]
    assert all(p <= min(percentages) + 0.051 for p in left_out)


def test_predict_with_model_file_reports_bad_images_and_predicts_the_rest(capsys, tmp_path, flatbuffers):
    model_dir = tmp_path / "app"
    model_dir.mkdir()
    (model_dir / "model.tflite").write_bytes(flatbuffers["float32"])
    (model_dir / "labels.txt").write_text("\n".join(SKIN_LABELS) + "\n")
    good = write_images(tmp_path / "images")
    corrupt = tmp_path / "images" / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    missing = tmp_path / "images" / "missing.png"

    code, stdout, stderr = run_cli(
        capsys,
        "predict",
        str(good[0]),
        str(corrupt),
        str(missing),
        str(good[1]),
        "--model",
        str(model_dir / "model.tflite"),
        "--top",
        "2",
    )
    assert code == 1
    assert "no model_card.json beside it says whether they are calibrated" in stderr
    predictions = parse_predictions(stdout)
    assert list(predictions) == [str(good[0]), str(good[1])]
    for path in good:
        check_ranking(predictions[str(path)], expected_probabilities(flatbuffers["float32"], path), SKIN_LABELS, 2)
    errors = [line for line in stderr.splitlines() if line.startswith("mobiledx: error:")]
    assert errors[0].startswith(f"mobiledx: error: {corrupt}: cannot decode image")
    assert errors[1] == f"mobiledx: error: {missing}: No such file or directory"
    assert errors[2] == "mobiledx: error: 2 of 4 image(s) could not be read"

    code, _, stderr = run_cli(
        capsys, "predict", str(good[0]), "--model", str(model_dir / "model.tflite"), "--age", "40"
    )
    assert code == 2 and "takes no patient metadata: drop --age" in stderr

    (model_dir / "labels.txt").unlink()
    code, _, stderr = run_cli(capsys, "predict", str(good[0]), "--model", str(model_dir / "model.tflite"))
    assert code == 2 and "no labels.txt next to" in stderr


def test_predict_with_dataset_uses_the_champion(store, capsys, tmp_path, flatbuffers):
    model_registry.set_champion("blood", store["blood-old"], variant="int8")
    images = write_images(tmp_path / "images")
    code, stdout, stderr = run_cli(capsys, "predict", *map(str, images), "--dataset", "blood", "--top", "5")
    assert code == 0, stderr
    assert store["blood-old"] in stderr and "int8" in stderr and "not a medical device" in stderr
    assert "scores: calibrated probabilities (temperature 1.250 fitted on the validation split" in stderr
    predictions, decisions = parse_predictions(stdout), parse_decisions(stdout)
    for path in images:  # top 5 of 3 classes: all 3, with blood's labels and the int8 model's numbers
        probabilities = expected_probabilities(flatbuffers["int8"], path)
        check_ranking(predictions[str(path)], probabilities, BLOOD_LABELS, 3)
        # the model card's operating point travels with the model: p(other) >= 0.4 means "refer"
        class_name, percent, decision = decisions[str(path)]
        assert class_name == "other" and percent == pytest.approx(100 * probabilities[2], abs=0.051)
        assert decision == ("refer" if probabilities[2] >= THRESHOLD else "below the referral threshold")


ENCODER = {"age_mean": 50.0, "age_std": 10.0, "sexes": ["female", "male"], "sites": ["back", "face"]}


@pytest.fixture(scope="module")
def metadata_flatbuffer() -> bytes:
    """A tiny classifier with an image input and a 6-feature metadata input (the ENCODER's width)."""
    import keras

    from mobiledx.tflite.conversion import convert

    image = keras.Input((8, 8, 3), name="image")
    metadata = keras.Input((6,), name="metadata")
    pixels = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255.0)(image))
    x = keras.layers.Concatenate()([pixels, metadata])
    model = keras.Model([image, metadata], keras.layers.Dense(3, activation="softmax", name="probabilities")(x))
    return convert(model, "float32")


def expected_with_metadata(model: bytes, path: Path, age, sex: str, site: str) -> np.ndarray:
    import pandas as pd

    from mobiledx.data.images import load_image
    from mobiledx.models.patient_features import MetadataEncoder
    from mobiledx.tflite.conversion import TFLiteClassifier

    classifier = TFLiteClassifier(model)
    features = MetadataEncoder(**ENCODER).transform(pd.DataFrame([{"age": age, "sex": sex, "site": site}]))
    return classifier.predict(load_image(path, classifier.image_size)[None], features)[0]


def test_predict_encodes_patient_metadata_for_a_metadata_model(capsys, tmp_path, metadata_flatbuffer):
    (tmp_path / "model.tflite").write_bytes(metadata_flatbuffer)
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    png = write_images(tmp_path / "images")[0]
    model = str(tmp_path / "model.tflite")

    code, _, stderr = run_cli(capsys, "predict", str(png), "--model", model)
    assert code == 2 and "no metadata_encoder.json was found" in stderr
    (tmp_path / "metadata_encoder.json").write_text(json.dumps(ENCODER))
    code, stdout, stderr = run_cli(capsys, "predict", str(png), "--model", model)
    assert code == 2 and stdout == "" and "pass --sex (female|male) and --site (back|face)" in stderr
    code, _, stderr = run_cli(capsys, "predict", str(png), "--model", model, "--sex", "male", "--site", "arm")
    assert code == 2 and "--site 'arm' was never seen in training; choose one of: back, face" in stderr

    results = {}
    for age, sex in ((40.0, "male"), (None, "female")):
        extra = ["--age", str(age)] if age is not None else []
        code, stdout, stderr = run_cli(
            capsys, "predict", str(png), "--model", model, "--sex", sex, "--site", "back", "--top", "3", *extra
        )
        assert code == 0, stderr
        expected = expected_with_metadata(metadata_flatbuffer, png, float("nan") if age is None else age, sex, "back")
        check_ranking(parse_predictions(stdout)[str(png)], expected, ["a", "b", "c"], 3)
        results[sex] = expected
    assert np.abs(results["male"] - results["female"]).max() > 0.01  # the metadata reaches the model


def test_release_and_predict_a_metadata_model_ship_its_encoder(store, capsys, tmp_path, metadata_flatbuffer):
    from mlflow.entities import Metric

    from mobiledx.tracking import mlflow_runs

    client = model_registry.client()
    experiment = client.get_experiment_by_name(mlflow_runs.EXPERIMENT_NAME).experiment_id
    paths = DatasetPaths("derm", root=tmp_path / "bundles")
    bundle = paths.export
    bundle.mkdir(parents=True)
    (bundle / "model_int8.tflite").write_bytes(metadata_flatbuffer)
    (bundle / "labels.txt").write_text("a\nb\nc\n")
    for card in ("model_card.md", "model_card.json"):
        (bundle / card).write_text("{}")
    (tmp_path / "metadata_encoder.json").write_text(json.dumps(ENCODER))
    run = client.create_run(experiment, tags={"dataset": "derm"})
    client.log_batch(run.info.run_id, metrics=[Metric("val_accuracy", 0.5, 0, 0)])
    client.log_artifacts(run.info.run_id, str(bundle), "tflite")
    client.log_artifact(run.info.run_id, str(tmp_path / "metadata_encoder.json"), "model")  # where train logs it
    log_model_of(run.info.run_id, paths, np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 6), np.float32))
    client.set_terminated(run.info.run_id)

    code, stdout, stderr = run_cli(
        capsys, "release", "derm", "--best", "val_accuracy", "--output", str(tmp_path / "rel")
    )
    assert code == 0, stderr
    folder = tmp_path / "rel" / "derm"
    assert json.loads((folder / "metadata_encoder.json").read_text()) == ENCODER
    assert json.loads((folder / "release.json").read_text())["metadata_input"] is True
    png = write_images(tmp_path / "images")[0]
    code, stdout, stderr = run_cli(
        capsys, "predict", str(png), "--dataset", "derm", "--age", "70", "--sex", "female", "--site", "face"
    )
    assert code == 0, stderr
    expected = expected_with_metadata(metadata_flatbuffer, png, 70.0, "female", "face")
    check_ranking(parse_predictions(stdout)[str(png)], expected, ["a", "b", "c"], 3)


# --------------------------------------------------------------------------- compare


def table_rows(markdown: str) -> dict[str, list[str]]:
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines() if line.startswith("| ")]
    header, body = rows[0], rows[1:]
    return {row[0]: dict(zip(header, row)) for row in body}


def test_compare_latest_and_best(store, capsys, tmp_path, flatbuffers):
    output = tmp_path / "reports" / "compare.md"
    code, stdout, _ = run_cli(capsys, "compare", "--output", str(output))
    assert code == 0 and output.read_text() == stdout
    rows = table_rows(stdout)
    assert sorted(rows) == ["blood", "skin"]
    skin = rows["skin"]
    assert skin["run id"] == f"`{store['skin-new']}`"
    assert (skin["val balanced accuracy"], skin["test accuracy"], skin["test balanced accuracy"],
            skin["test macro ROC-AUC"]) == ("0.750", "0.900", "0.600", "0.850")
    assert skin["int8 size (MB)"] == f"{len(flatbuffers['int8']) / 1e6:.2f}"
    assert skin["float32 size (MB)"] == f"{len(flatbuffers['float32']) / 1e6:.2f}"
    assert (skin["int8 latency 1 thread (ms)"], skin["int8 accuracy"]) == ("1.50", "0.880")
    assert rows["blood"]["run id"] == f"`{store['blood-new']}`" and rows["blood"]["test accuracy"] == "0.650"

    code, stdout, _ = run_cli(capsys, "compare", "--best", "val_balanced_accuracy")
    rows = table_rows(stdout)
    assert rows["skin"]["run id"] == f"`{store['skin-new']}`" and rows["skin"]["val_balanced_accuracy"] == "0.750"
    assert rows["blood"]["run id"] == f"`{store['blood-old']}`"

    client = model_registry.client()
    experiment = client.get_experiment_by_name("mobiledx-compare")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.data.tags["basis"] for r in runs] == ["latest", "best-val_balanced_accuracy"]
    logged = Path(client.download_artifacts(runs[1].info.run_id, "comparison.md", str(tmp_path / "dl"))).read_text()
    assert logged == stdout
    table = json.loads(
        Path(client.download_artifacts(runs[1].info.run_id, "comparison.json", str(tmp_path / "dl"))).read_text()
    )
    assert sorted(table["columns"]) == sorted(
        ["dataset", "run_id", *comparison.COMPARE_COLUMNS, "val_balanced_accuracy"]
    )
    assert str(tmp_path) in runs[1].info.artifact_uri  # artifacts stay in this store's folder


def test_cli_help_runs_as_a_module():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "mobiledx.cli", "release", "--help"], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "model.tflite" in done.stdout and "--best METRIC" in done.stdout and "--run-id ID" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "mobiledx.cli", "predict", "x.png"], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 2 and "one of the arguments --model --dataset is required" in done.stderr

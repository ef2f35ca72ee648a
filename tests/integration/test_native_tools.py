"""What DVC and MLflow users see of the tiny pipeline, in the tools themselves.

A compact `dvc exp show`; a per-dataset recipe override re-running only that dataset; the train
run's splits as MLflow datasets with the raw data's digest; the registered version being the logged
model, which `mlflow.pyfunc` loads and which classifies like `mobiledx predict`; and the champion
chosen as the UI does (an alias set through `MlflowClient`) released by `mobiledx release <dataset>`.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mobiledx import cli
from mobiledx.params import load_params
from tests.support.project import DATASETS, copy_project, run, run_in_background, stages_run

pytestmark = pytest.mark.slow

HEADLINE_FILES = ("split/{}/split_summary.json", "models/{}/train_metrics.json", "evaluation/{}/headline.json",
                  "export/{}/headline.json")


@pytest.fixture(scope="module")
def project(built_project, tmp_path_factory) -> Path:
    return copy_project(built_project, tmp_path_factory.mktemp("native") / "project")


@pytest.fixture(scope="module", autouse=True)
def blood_experiment(project):
    """An experiment that adds a training key to demo-blood's own recipe only (`+`: the entry has no such key),
    run in a temporary copy, started with the module: it runs on one core while the tests that do not need it
    use the other."""
    experiment = run_in_background(["dvc", "exp", "run", "--temp", "-n", "blood-dropout", "-S",
                                    "+datasets.demo-blood.train.dropout=0.3"], project)
    yield experiment
    experiment.stop()


@pytest.fixture
def store(project, monkeypatch):
    """The project's MLflow store, as `mobiledx` finds it when run from the repository root."""
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    from mobiledx.tracking import model_registry

    return model_registry.client()


def exp_show_columns(project: Path, *options: str) -> list[str]:
    table = run(["dvc", "exp", "show", "--csv", *options], project)
    return next(csv.reader(io.StringIO(table[table.index("Experiment,"):])))


def test_the_train_run_logs_its_splits_as_mlflow_datasets(project, store):
    experiment = store.get_experiment_by_name("mobiledx")
    for dataset in DATASETS:
        info = json.loads((project / f"data/ingested/{dataset}/dataset.json").read_text())
        split = pd.read_csv(project / f"data/split/{dataset}/split.csv")
        found = store.search_runs([experiment.experiment_id], f"tags.dataset = '{dataset}'",
                                  order_by=["attributes.start_time ASC"])[0]
        inputs = {tag.value: entry.dataset for entry in found.inputs.dataset_inputs for tag in entry.tags
                  if tag.key == "mlflow.data.context"}
        assert sorted(inputs) == ["test", "train", "val"]
        assert len({d.digest for d in inputs.values()}) == 3  # one digest per split: MLflow keeps all three
        for context, logged in inputs.items():
            profile = json.loads(logged.profile)
            assert logged.name == dataset and profile["raw_data_sha256"] == info["raw_hash"]
            assert profile["images"] == (split["split"] == context).sum()
        commit = found.data.tags["git_commit"]
        assert found.info.run_name == f"{dataset}/workspace@{commit[:7]}"
        assert "system/cpu_utilization_percentage" in found.data.metrics  # MLflow's system metrics


def first_test_image(project: Path, dataset: str, image_id: str | None = None) -> Path:
    """The original file of ``image_id`` (default: the first test image) of a demo dataset."""
    split = pd.read_csv(project / f"data/split/{dataset}/split.csv")
    manifest = pd.read_csv(project / f"data/ingested/{dataset}/manifest.csv").set_index("image_id")
    image_id = image_id or split.loc[split["split"] == "test", "image_id"].iloc[0]
    return project / "data" / "raw" / dataset / manifest.loc[image_id, "path"]


def test_the_registered_version_is_the_logged_model_and_classifies_like_predict(project, store, capsys):
    import mlflow

    from mobiledx.data.images import load_image
    from mobiledx.tflite.conversion import TFLiteClassifier

    version = store.get_model_version("demo-skin", "1")
    assert version.source.startswith("models:/m-")
    logged = store.get_logged_model(version.source.removeprefix("models:/"))
    assert logged.source_run_id == version.run_id and logged.name == "classifier"
    settings = load_params(project / "params.yaml").for_dataset("demo-skin").export
    assert logged.params["export.representative_images"] == str(settings.representative_images)
    assert logged.params["export.int8_range_percentile"] == str(settings.int8_range_percentile)
    image = first_test_image(project, "demo-skin")
    model = mlflow.pyfunc.load_model("models:/demo-skin/1")
    int8 = project / "data/export/demo-skin/model_int8.tflite"
    pixels = load_image(image, TFLiteClassifier(int8).image_size)[None]
    probabilities = model.predict(pixels)
    assert np.array_equal(probabilities, TFLiteClassifier(int8).predict(pixels))
    float32 = model.predict(pixels, params={"variant": "float32"})
    assert np.array_equal(float32, TFLiteClassifier(project / "data/export/demo-skin/model_float32.tflite")
                          .predict(pixels))

    assert cli.main(["predict", str(image), "--model", str(int8), "--top", "7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    labels = (project / "data/export/demo-skin/labels.txt").read_text().split()
    printed = {line.split()[1]: float(line.split()[2]) for line in lines[1:] if line.strip()[0].isdigit()}
    assert printed == {label: round(100 * float(p), 1) for label, p in zip(labels, probabilities[0])}
    assert lines[1].split()[1] == labels[int(probabilities[0].argmax())]
    assert lines[-1].strip().startswith("mel ")  # the operating point of demo-skin's recipe: refer or not


def test_a_champion_chosen_in_the_registry_is_what_release_writes(project, store, tmp_path, capsys):
    store.set_registered_model_alias("demo-blood", "champion", "1")  # what the UI's "Add alias" does
    assert cli.main(["release", "demo-blood", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    manifest = json.loads((tmp_path / "demo-blood" / "release.json").read_text())
    version = store.get_model_version("demo-blood", "1")
    assert manifest["version"] == 1 and manifest["run_id"] == version.run_id
    assert manifest["sha256"] == version.tags["sha256.model_int8.tflite"]
    assert "version 1 of 'demo-blood'" in out and version.run_id in out
    point = manifest["operating_point"]
    assert point["class"] == "all" and point["target"] == "sensitivity >= 0.95"
    assert f"refer when p(all) >= {point['threshold']:.4g}" in (tmp_path / "demo-blood" / "model_card.md").read_text()


def test_the_released_bundle_decoding_files_in_mediapipe_gives_the_pipelines_scores(project, store, tmp_path):
    """The real client: MediaPipe Tasks loads the released model and decodes each demo-skin test JPEG itself
    (its own decoder, not the pipeline's): its agreement with the scores evaluate reported (calibrated when
    a temperature was applied) is exactly what export measured for that path."""
    from mobiledx.tflite.ondevice import OnDeviceClassifier

    store.set_registered_model_alias("demo-skin", "champion", "1")
    assert cli.main(["release", "demo-skin", "--output", str(tmp_path)]) == 0
    folder = tmp_path / "demo-skin"
    manifest = json.loads((folder / "release.json").read_text())
    labels = (folder / "labels.txt").read_text().split()
    predictions = pd.read_csv(project / "data/evaluation/demo-skin/predictions.csv")
    reported = predictions[[f"p_{label}" for label in labels]].to_numpy(np.float32)
    files = [first_test_image(project, "demo-skin", image_id) for image_id in predictions["image_id"]]
    with OnDeviceClassifier((folder / "model.tflite").read_bytes(), len(labels)) as client:
        scores = np.stack([client.classify_file(path) for path in files])
    agreement = float(np.mean(scores.argmax(1) == reported.argmax(1)))
    export = json.loads((project / "data/export/demo-skin/export.json").read_text())
    shipped = export[manifest["variant"]]["on_device_paths"]["mediapipe_file"]
    assert agreement == pytest.approx(shipped["agreement_with_keras"], abs=1e-9)  # what export measured
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-3)  # class probabilities, every class returned
    assert manifest["validated_on"]["demo-clinic"].startswith("balanced accuracy ")  # stage external
    assert "**Validated on:** other datasets (external validation):\n> - demo-clinic: balanced accuracy" in (
        folder / "model_card.md").read_text()


def test_compare_external_prints_the_train_by_test_matrix(project, store, capsys):
    assert cli.main(["compare", "--external", "--no-log"]) == 0
    out = capsys.readouterr().out
    external = json.loads((project / "data/external/demo-skin-on-demo-clinic/metrics.json").read_text())
    own = json.loads((project / "data/evaluation/demo-skin/metrics.json").read_text())
    assert "| trained on \\ tested on | own test split | demo-clinic |" in out
    assert (f"| demo-skin | {own['balanced_accuracy']:.3f} | {external['balanced_accuracy']:.3f} "
            f"({external['n_images']} images) |") in out
    matrix = out[out.index("| trained on"):].splitlines()
    blood = next(line for line in matrix if line.startswith("| demo-blood | "))
    assert blood.endswith("| – |")  # demo-blood was not validated elsewhere


def test_a_dataset_recipe_override_reruns_only_that_datasets_stages(blood_experiment):
    ran = stages_run(blood_experiment.result())
    assert {"train@demo-blood", "evaluate@demo-blood", "export@demo-blood"} <= ran
    assert not [stage for stage in ran if stage.endswith("@demo-skin")], ran


def test_dvc_exp_show_carries_a_few_headline_metrics_per_dataset(project, blood_experiment):
    blood_experiment.result()
    columns = exp_show_columns(project)
    for dataset in DATASETS:
        metrics = [c for c in columns if c.startswith(f"{dataset}.")]
        assert 15 <= len(metrics) <= 30, metrics  # headline figures only: no per-class rows, no CI tables
        assert {f"{dataset}.val_balanced_accuracy", f"{dataset}.test_balanced_accuracy",
                f"{dataset}.int8_agreement_with_keras"} <= set(metrics)
        keys = set()
        for pattern in HEADLINE_FILES:  # each stage's metrics file is keyed by the dataset: short column names
            figures = json.loads((project / "data" / pattern.format(dataset)).read_text())
            assert list(figures) == [dataset]
            keys |= set(figures[dataset])
        assert {f"{dataset}.{key}" for key in keys} == set(metrics)
    changed = exp_show_columns(project, "--only-changed")
    assert len(changed) <= 40, changed
    assert not [c for c in changed if c.startswith("demo-skin.")]  # demo-skin's figures did not change
    assert "datasets.demo-blood.train.dropout" in changed


def test_predict_explain_writes_where_the_champion_looked(project, store, tmp_path, capsys):
    """`predict --dataset --explain DIR`: one PNG per image, from the champion run's own Keras model
    (logged by evaluate), for the class predict printed; `--model` without model.keras beside it is a
    one-line error naming the fix."""
    from PIL import Image

    store.set_registered_model_alias("demo-skin", "champion", "1")
    split = pd.read_csv(project / "data/split/demo-skin/split.csv")
    images = [first_test_image(project, "demo-skin", image_id)
              for image_id in split.loc[split["split"] == "test", "image_id"].iloc[:3]]
    out_dir = tmp_path / "why"
    assert cli.main(["predict", *map(str, images), "--dataset", "demo-skin", "--explain", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(f"{image.stem}.png" for image in images)
    for image in images:
        assert f"explained: {out_dir / (image.stem + '.png')}" in printed
        assert Image.open(out_dir / f"{image.stem}.png").size[1] > 200  # the image and its Grad-CAM below it

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for name in ("model_int8.tflite", "labels.txt"):
        (bundle / name).write_bytes((project / "data/export/demo-skin" / name).read_bytes())
    assert cli.main(["predict", str(images[0]), "--model", str(bundle / "model_int8.tflite"),
                     "--explain", str(out_dir)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "no model.keras next to" in error and "--dataset NAME" in error

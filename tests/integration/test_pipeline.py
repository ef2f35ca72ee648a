"""The whole DVC pipeline on tiny demo data, in a throwaway git + DVC repository.

Checks what a user relies on: `dvc repro` builds every stage for both datasets, a second
`dvc repro` does nothing, `dvc exp run -S lr=...` re-runs only train/evaluate/export, and each
run lands in the MLflow store with its params, per-epoch and test metrics and `.tflite` files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.support.project import DATASETS, copy_project, run, run_in_background, stages_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(built_project, tmp_path_factory) -> Path:
    """This module's own copy of the built tiny pipeline (git + DVC repository, committed after `dvc repro`)."""
    return copy_project(built_project, tmp_path_factory.mktemp("pipeline") / "project")


def mlflow_runs(root: Path):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mobiledx")
    return client, client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


@pytest.fixture(scope="module", autouse=True)
def lr_experiment(built_project, tmp_path_factory):
    """`dvc exp run -S lr=0.0001` in a second copy, started with the module: it runs (its stages mostly
    on one core) while the other tests here use the other core; its test waits for it."""
    root = copy_project(built_project, tmp_path_factory.mktemp("lr-experiment") / "project")
    experiment = run_in_background(["dvc", "exp", "run", "-S", "lr=0.0001"], root)
    yield experiment
    experiment.stop()


@pytest.fixture(scope="module")
def repro(first_repro) -> str:
    """Output of the first `dvc repro` of the built project (every stage of both datasets)."""
    return first_repro


def test_repro_runs_every_stage_for_both_datasets(project, repro):
    expected = {"make_demo", "ingest_external@demo-clinic", "external@demo-skin-on-demo-clinic"} | {
        f"{s}@{d}" for s in ("ingest", "validate", "split", "rebalance", "train", "evaluate", "export")
        for d in DATASETS}
    assert stages_run(repro) == expected
    for dataset in DATASETS:
        for output in ("data/ingested/{}/images.npy", "data/validated/{}/report.md", "data/split/{}/split.csv",
                       "data/rebalanced/{}/class_weights.json", "data/models/{}/model.keras",
                       "data/evaluation/{}/metrics.json", "data/evaluation/{}/confusion_matrix.png",
                       "data/evaluation/{}/reliability.png",
                       "data/export/{}/model_float32.tflite", "data/export/{}/model_int8.tflite"):
            assert (project / output.format(dataset)).stat().st_size > 0
    assert (project / "data/raw/demo-skin/HAM10000_metadata.csv").exists()
    assert list((project / "data/raw/demo-blood/training_data").glob("fold_*/all/UID_*_all.bmp"))


def test_export_report_counts_the_test_images_each_variant_changes(project, repro):
    for dataset in DATASETS:
        report = json.loads((project / f"data/export/{dataset}/export.json").read_text())
        n_test = json.loads((project / f"data/evaluation/{dataset}/metrics.json").read_text())["n_images"]
        for figures in report.values():
            assert figures["disagreements_with_keras"] == round((1 - figures["agreement_with_keras"]) * n_test)
        assert report["float32"]["disagreements_with_keras"] == 0
        card = (project / f"data/export/{dataset}/model_card.md").read_text()
        assert f"({report['int8']['disagreements_with_keras']} differ)" in card
        assert f"The test split has {n_test} images" in card


def test_no_group_crosses_splits_in_the_pipeline_outputs(project, repro):
    import pandas as pd

    for dataset in DATASETS:
        split = pd.read_csv(project / f"data/split/{dataset}/split.csv")
        assert (split.groupby("group_id")["split"].nunique() == 1).all()
        assert set(split["split"]) == {"train", "val", "test"}


def test_each_dataset_has_one_complete_mlflow_run(project, repro):
    client, runs = mlflow_runs(project)
    assert sorted(r.data.tags["dataset"] for r in runs) == sorted(DATASETS)
    for found in runs:
        assert found.info.status == "FINISHED"
        assert found.data.params["lr"] == "0.001" and found.data.params["train.epochs"] == "2"
        assert len(client.get_metric_history(found.info.run_id, "val_loss")) == 2  # one point per epoch
        metrics = found.data.metrics
        assert 0.0 <= metrics["test_balanced_accuracy_ci95_low"] <= metrics["test_balanced_accuracy"] \
            <= metrics["test_balanced_accuracy_ci95_high"] <= 1.0
        assert "tflite_int8_agreement_with_keras" in found.data.metrics
        artifacts = {a.path for a in client.list_artifacts(found.info.run_id, "tflite")}
        assert {"tflite/model_float32.tflite", "tflite/model_int8.tflite", "tflite/labels.txt"} <= artifacts
        assert found.data.tags["raw_data_hash"] and len(found.data.tags["git_commit"]) == 40


def test_second_repro_does_nothing(project, repro):
    output = run(["dvc", "repro"], project)
    assert stages_run(output) == set()


def test_forced_rebuild_gives_identical_split_and_metrics(project, repro):
    """Same params + same data = same split and model: `dvc repro -f` reproduces the outputs exactly."""
    outputs = ["data/split/demo-skin/split.csv", "data/models/demo-blood/history.csv",
               "data/evaluation/demo-blood/metrics.json", "data/evaluation/demo-blood/predictions.csv"]
    before = {path: (project / path).read_bytes() for path in outputs}
    for stage in ("split@demo-skin", "train@demo-blood", "evaluate@demo-blood"):
        run(["dvc", "repro", "-f", "-s", stage], project)
    changed = [path for path in outputs if (project / path).read_bytes() != before[path]]
    assert changed == []


def test_lr_experiment_reruns_only_training_onwards(lr_experiment, repro):
    output = lr_experiment.result()
    project = lr_experiment.cwd
    assert stages_run(output) == {f"{s}@{d}" for s in ("train", "evaluate", "export") for d in DATASETS} | {
        "external@demo-skin-on-demo-clinic"}
    client, runs = mlflow_runs(project)
    new = [r for r in runs if r.data.params["lr"] == "0.0001"]
    assert sorted(r.data.tags["dataset"] for r in new) == sorted(DATASETS)
    for found in new:
        assert found.data.tags["dvc_exp_name"] != "workspace"
        assert "tflite/model_int8.tflite" in {a.path for a in client.list_artifacts(found.info.run_id, "tflite")}


def test_the_exported_model_returns_exactly_the_scores_evaluate_reported(project, repro):
    """Calibrated or not (the temperature is applied only when it generalises within validation), the
    shipped model's scores are the ones every figure, the operating point and predictions.csv use."""
    import pandas as pd

    from mobiledx.data.cache import RowView, load_ingested
    from mobiledx.paths import DatasetPaths
    from mobiledx.tflite.conversion import TFLiteClassifier

    for dataset in DATASETS:
        calibration = json.loads((project / f"data/evaluation/{dataset}/calibration.json").read_text())
        metrics = json.loads((project / f"data/evaluation/{dataset}/metrics.json").read_text())
        assert calibration["method"] == "temperature" and calibration["fitted_on"] == "validation"
        assert calibration["applied"] == (calibration["temperature"] != 1.0)
        assert calibration["validation"]["top_class_changes"] == calibration["test"]["top_class_changes"] == 0
        assert metrics["expected_calibration_error"] == pytest.approx(calibration["test"]["ece_after"])
        assert metrics["expected_calibration_error_uncalibrated"] == pytest.approx(calibration["test"]["ece_before"])

        predictions = pd.read_csv(project / f"data/evaluation/{dataset}/predictions.csv")
        reported = predictions.filter(like="p_").to_numpy(np.float32)
        data = load_ingested(DatasetPaths(dataset, root=project))
        pixels = RowView(data.images, data.rows(predictions["image_id"]))
        shipped = TFLiteClassifier((project / f"data/export/{dataset}/model_float32.tflite").read_bytes())
        assert np.abs(shipped.predict(pixels, None) - reported).max() < 1e-4  # predictions.csv has 6 decimals
        card = (project / f"data/export/{dataset}/model_card.md").read_text()
        assert "## Calibration" in card
        assert (f"T = {calibration['temperature']:.3f}" if calibration["applied"] else calibration["reason"]) in card


def test_every_variant_is_measured_through_every_decoding_path_and_the_worst_is_the_headline(project, repro):
    paths_seen = set()
    for dataset in DATASETS:
        report = json.loads((project / f"data/export/{dataset}/export.json").read_text())
        n_test = json.loads((project / f"data/evaluation/{dataset}/metrics.json").read_text())["n_images"]
        headline = json.loads((project / f"data/export/{dataset}/headline.json").read_text())[dataset]
        for figures in report.values():
            by_path = figures["on_device_paths"]
            paths_seen |= set(by_path)
            assert by_path["mediapipe_file"]["n_images"] == by_path["libjpeg_turbo"]["n_images"] == n_test
            worst = min(path["agreement_with_pipeline"] for path in by_path.values())
            assert figures["on_device_agreement_with_pipeline"] == worst
            assert by_path[figures["on_device_worst_path"]]["agreement_with_pipeline"] == worst
            assert figures["on_device_accuracy"] == min(path["accuracy"] for path in by_path.values())
            # the pipeline's own decoder, resized by MediaPipe exactly as ingest resized: the same pixels
            assert by_path["libjpeg_turbo"]["agreement_with_pipeline"] == 1.0
            assert by_path["libjpeg_turbo"]["max_score_difference"] < 1e-4
        int8 = report["int8"]["on_device_agreement_with_pipeline"]
        assert headline["int8_on_device_agreement"] == pytest.approx(int8, abs=1e-4)
        card = (project / f"data/export/{dataset}/model_card.md").read_text()
        assert "| int8 | mediapipe_file |" in card and "Not measured: iOS" in card
    assert paths_seen == {"mediapipe_file", "libjpeg_turbo", "libjpeg_turbo_half"}  # demo-skin's JPEGs have all three


def test_the_skin_model_is_validated_on_another_clinic_without_the_images_it_was_fitted_on(project, repro):
    """demo-clinic re-ships some demo-skin photos under their ISIC ids: those demo-skin trained or chose the
    model on are excluded and listed, the rest evaluated with the label map; figures reach MLflow and DVC."""
    import pandas as pd

    out = project / "data/external/demo-skin-on-demo-clinic"
    metrics = json.loads((out / "metrics.json").read_text())
    excluded = pd.read_csv(out / "excluded.csv")
    split = pd.read_csv(project / "data/split/demo-skin/split.csv").set_index("image_id")["split"]
    clinic = pd.read_csv(project / "data/ingested/demo-clinic/manifest.csv")
    shared = clinic[clinic["image_id"].isin(split.index)]["image_id"]  # same ISIC ids as demo-skin's
    seen = set(shared[split.reindex(shared).isin(["train", "val"]).to_numpy()])
    assert len(shared) == 8 and seen <= set(excluded["image_b"]) and metrics["n_excluded"] == len(excluded) > 0
    assert set(excluded["split_a"]) <= {"train", "val"}
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == metrics["n_images"] == len(clinic) - metrics["n_excluded"]
    assert not set(predictions["image_id"]) & set(excluded["image_b"])
    assert set(predictions.columns) == {"image_id", "actual", "predicted", "p_Benign", "p_Malignant"}
    assert np.allclose(predictions[["p_Benign", "p_Malignant"]].sum(axis=1), 1.0, atol=1e-5)
    headline = json.loads((out / "headline.json").read_text())["demo-skin-on-demo-clinic"]
    assert headline["balanced_accuracy"] == pytest.approx(metrics["balanced_accuracy"], abs=1e-4)
    client, runs = mlflow_runs(project)
    skin = next(r for r in runs if r.data.tags["dataset"] == "demo-skin")
    assert skin.data.metrics["external/demo-clinic/balanced_accuracy"] == pytest.approx(metrics["balanced_accuracy"])
    assert skin.data.tags["validated_on.demo-clinic"].startswith("balanced accuracy ")


def test_evaluate_writes_an_error_gallery_per_class_and_logs_it_with_the_keras_model(project, repro):
    """One PNG per class, tiles that are the test split's most confident mistakes (as predictions.csv
    reports them), the same files in the MLflow run, and the Keras model that `predict --explain` needs."""
    import pandas as pd
    from PIL import Image

    from mobiledx.evaluation.gallery import gallery_file

    client, _ = mlflow_runs(project)
    for dataset in DATASETS:
        folder = project / f"data/evaluation/{dataset}"
        labels = (project / f"data/export/{dataset}/labels.txt").read_text().split()
        files = sorted(p.name for p in (folder / "gallery").iterdir())
        assert files == [gallery_file(i, label) for i, label in enumerate(labels)]
        assert all(Image.open(folder / "gallery" / name).size[0] > 100 for name in files)

        predictions = pd.read_csv(folder / "predictions.csv")
        tiles = pd.read_csv(folder / "gallery.csv")
        shown = predictions.iloc[tiles["position"]]  # predictions.csv keeps the split's order
        assert tiles["image_id"].tolist() == shown["image_id"].tolist()
        assert tiles["true_class"].tolist() == shown["actual"].tolist()
        assert tiles["predicted_class"].tolist() == shown["predicted"].tolist()
        assert set(tiles["maps"]) == {"grad_cam"}
        for (label, kind), group in tiles.groupby(["gallery_class", "kind"], sort=False):
            is_class, said_class = predictions["actual"] == label, predictions["predicted"] == label
            candidates = {"false_negative": is_class & ~said_class, "false_positive": ~is_class & said_class,
                          "correct": is_class & said_class}[kind]
            assert candidates.iloc[group["position"]].all()
            assert len(group) == min(int(candidates.sum()), 2 if kind == "correct" else 3)
            p_class = predictions[f"p_{label}"].iloc[group["position"]].to_numpy()
            order = np.diff(p_class) if kind == "false_negative" else -np.diff(p_class)
            assert (order >= -1e-6).all()  # most confident first (predictions.csv has 6 decimals)
            unshown = predictions[f"p_{label}"][candidates].drop(predictions.index[group["position"]])
            if len(unshown):  # nothing left out is more confidently wrong (or right) than what is shown
                assert (unshown.min() >= p_class.max() - 1e-6) if kind == "false_negative" else (
                    unshown.max() <= p_class.min() + 1e-6)

        run_id = json.loads((project / f"data/models/{dataset}/run.json").read_text())["run_id"]  # these outputs' run
        logged = {Path(f.path).name for f in client.list_artifacts(run_id, "plots/gallery")}
        assert logged == set(files)
        assert "model/model.keras" in {f.path for f in client.list_artifacts(run_id, "model")}
        assert "evaluation/gallery.csv" in {f.path for f in client.list_artifacts(run_id, "evaluation")}

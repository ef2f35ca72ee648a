"""The MLflow UI, opened in a real headless browser, shows both datasets' runs, the data each used, the
logged model and the `.tflite` files.

Starts a real `mlflow server` (SQLite store and artifact root under tmp_path, as `make ui` does),
logs one run per demo dataset over HTTP with mobiledx's own logging (split datasets, the logged
pyfunc model), then drives Debian's chromium through its chromedriver (Selenium; no Selenium
Manager download). Needs the system browser: `make browser`. Saves screenshots of the runs table
(Dataset column), the run page (logged model) and the artifact view, also to
$MOBILEDX_SCREENSHOT_DIR when that is set.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from mobiledx.tracking import mlflow_runs
from tests.support import REPO_ROOT
from tests.support.browser import chromium_for_test

DATASETS = ("demo-skin", "demo-blood")
ARTIFACT = "tflite/model_int8.tflite"
MAKEFILE_UI = (REPO_ROOT / "Makefile").read_text().split("\nui:", 1)[-1]  # the `make ui` recipe
EXTERNAL = "demo-clinic"  # a dataset demo-skin's model was externally validated on
TIMEOUT = 60  # seconds for each element to appear


@pytest.fixture
def browser(tmp_path) -> Iterator[webdriver.Chrome]:
    """Headless Debian chromium driven by the matching chromedriver from the same distribution."""
    with chromium_for_test(tmp_path) as driver:
        yield driver


@pytest.fixture(scope="module")
def tflite_model() -> bytes:
    """A real (tiny) .tflite classifier: the logged model runs it on its input example when logged."""
    import keras

    from mobiledx.tflite.conversion import convert

    image = keras.Input((8, 8, 3), name="image")
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255.0)(image))
    return convert(keras.Model(image, keras.layers.Dense(2, activation="softmax")(pooled)), "float32")


def _bundle(root: Path, dataset: str, model: bytes):
    """A dataset's export folder as the export stage leaves it (one variant is enough here)."""
    from mobiledx.paths import DatasetPaths

    paths = DatasetPaths(dataset, root=root)
    paths.export.mkdir(parents=True)
    paths.tflite("int8").write_bytes(model)
    paths.labels.write_text("benign\nmalignant\n")
    paths.model_cards[0].write_text(f"# Model card: mobiledx-{dataset}\n")
    return paths


def _splits() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A 12-image manifest and its split assignment."""
    manifest = pd.DataFrame({"image_id": [f"img{i}" for i in range(12)], "path": [f"img{i}.jpg" for i in range(12)],
                             "label": ["benign", "malignant"] * 6, "sha256": [f"{i:064x}" for i in range(12)]})
    assignment = manifest[["image_id", "label"]].assign(group_id=manifest["image_id"],
                                                         split=["train"] * 8 + ["val"] * 2 + ["test"] * 2)
    return manifest, assignment


def _log_demo_runs(url: str, root: Path, model: bytes) -> tuple[str, dict[str, str], dict[str, str], dict[str, str]]:
    """One finished run per demo dataset, logged as the pipeline logs them; returns the experiment id, run ids
    and the train split's digest per dataset."""
    import mlflow

    from mobiledx.tracking.mlflow_datasets import log_split_inputs, split_datasets
    from mobiledx.tracking.mlflow_model import log_bundle_model

    mlflow.set_tracking_uri(url)
    with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_URI": url}):  # as the train stage makes it, on the server
        experiment_id = mlflow_runs._experiment_id(mlflow, mlflow_runs.EXPERIMENT_NAME)
    manifest, assignment = _splits()
    run_ids, digests, model_ids = {}, {}, {}
    for dataset in DATASETS:
        info = {"raw_hash": f"{len(dataset):064x}", "image_size": 8, "kind": "folder"}
        paths = _bundle(root, dataset, model)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"{dataset}/workspace@abc1234",
                              tags={"dataset": dataset}) as run:
            log_split_inputs(dataset, root / "raw" / dataset, info, manifest, assignment)
            mlflow.log_artifact(str(paths.tflite("int8")), artifact_path=os.path.dirname(ARTIFACT))
            if dataset == DATASETS[0]:  # what stage external logs to the model's run
                mlflow.log_metric(f"external/{EXTERNAL}/balanced_accuracy", 0.8125)
                mlflow.set_tag(f"validated_on.{EXTERNAL}", f"balanced accuracy 0.812 on 200 images of {EXTERNAL}")
            logged = log_bundle_model(paths, example=np.zeros((1, 8, 8, 3), np.uint8), metadata_example=None,
                                      num_classes=2, default_variant="int8", metrics={"test_accuracy": 0.75},
                                      tags={"dataset": dataset}, params={"export.int8_range_percentile": "99.999"})
        run_ids[dataset], model_ids[dataset] = run.info.run_id, logged.model_id
        digests[dataset] = split_datasets(dataset, root, info, manifest, assignment)[0].digest
    return experiment_id, run_ids, digests, model_ids


def _screenshot(browser, path: Path) -> None:
    assert browser.save_screenshot(str(path))
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= 1000 and image.height >= 500, image.size
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 24)) > 50, "screenshot looks blank"
    if os.environ.get("MOBILEDX_SCREENSHOT_DIR"):
        target = Path(os.environ["MOBILEDX_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / path.name)


def _page_text(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def _wait(driver, condition, what: str):
    """Wait up to TIMEOUT for ``condition``; on failure, say what was missing and what the page showed."""
    try:
        return WebDriverWait(driver, TIMEOUT).until(condition)
    except TimeoutException:
        pytest.fail(f"MLflow UI: {what} not shown within {TIMEOUT}s at {driver.current_url}; page text:\n"
                    f"{_page_text(driver)[:3000]}", pytrace=False)


def _wait_for_text(driver, pattern: str, what: str) -> None:
    _wait(driver, lambda d: re.search(pattern, _page_text(d)), what)


def _click(driver, xpath: str, what: str) -> None:
    _wait(driver, EC.element_to_be_clickable((By.XPATH, xpath)), f"clickable {what}").click()


def test_mlflow_ui_shows_runs_their_datasets_logged_models_and_tflite_artifacts(browser, mlflow_server, tmp_path,
                                                                              tflite_model):
    url = mlflow_server.wait()
    experiment_id, run_ids, digests, model_ids = _log_demo_runs(url, tmp_path, tflite_model)
    run_names = [f"{dataset}/workspace@abc1234" for dataset in DATASETS]

    # `make ui` prints the UI's address in its "Model training" view (MLflow 3.17 opens the GenAI overview
    # otherwise; the choice is kept by the browser): from there the experiment opens on its runs table,
    # listing both datasets, and the Dataset column names each run's data: "<dataset> (<digest>)".
    assert "mlflow_runs.ui_url('http://127.0.0.1:5000')" in MAKEFILE_UI
    with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_URI": url}):
        landing = mlflow_runs.ui_url(url)
    assert landing == f"{url}/#/experiments/{experiment_id}?workflowType=machine_learning"
    browser.get(landing)
    _wait(browser, lambda d: "/runs" in d.current_url, "the runs table as the experiment's landing view")
    for name in run_names:
        _wait_for_text(browser, re.escape(name), f"run {name!r} in the runs table")
    for dataset in DATASETS:
        _wait_for_text(browser, rf"{re.escape(dataset)} \({digests[dataset]}\)", f"Dataset column entry of {dataset}")
    _screenshot(browser, tmp_path / "mlflow_ui_runs_datasets.png")

    # Each run's page shows its dataset tag and its logged model; go there by clicking the run's link.
    for dataset, name in zip(DATASETS, run_names):
        _click(browser, f"//a[normalize-space()='{name}']", f"link to run {name!r}")
        _wait_for_text(browser, rf"dataset\s*:\s*{re.escape(dataset)}", f"tag dataset={dataset} on the run page")
        _wait_for_text(browser, r"Logged models[\s\S]*classifier", "the logged model 'classifier' on the run page")
        if dataset == DATASETS[0]:  # an external validation shows on the model's run: its metric and its tag
            _wait_for_text(browser, rf"external/{EXTERNAL}/balanced_accuracy\s*0\.8125", "the external metric")
            _wait_for_text(browser, rf"validated_on\.{EXTERNAL}\s*:\s*balanced accuracy 0\.812", "validated_on tag")
        assert f"/runs/{run_ids[dataset]}" in browser.current_url
        if dataset != DATASETS[-1]:
            browser.back()
    heading = browser.find_element(By.XPATH, "//*[starts-with(normalize-space(text()), 'Logged models')]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", heading)
    _screenshot(browser, tmp_path / "mlflow_ui_run_logged_model.png")

    # The last run's Artifacts tab lists tflite/; opening it and selecting the model shows its full path.
    _click(browser, "//*[normalize-space(text())='Artifacts']", "Artifacts tab")
    for node in Path(ARTIFACT).parts:
        _click(browser, f"//*[@data-testid='artifact-tree-node'][normalize-space()='{node}']", f"artifact {node!r}")
    _wait_for_text(browser, rf"Path: \S*/{run_ids[DATASETS[-1]]}/artifacts/{re.escape(ARTIFACT)}",
                   f"details of the selected artifact {ARTIFACT}")
    assert ARTIFACT in _page_text(browser).splitlines()
    _screenshot(browser, tmp_path / "mlflow_ui_artifacts.png")

    # The logged model's own page shows the export settings it was built with (its params).
    browser.get(f"{url}/#/experiments/{experiment_id}/models/{model_ids[DATASETS[-1]]}")
    _wait_for_text(browser, r"export\.int8_range_percentile\s*99\.999", "the logged model's export params")
    heading = browser.find_element(By.XPATH, "//*[starts-with(normalize-space(text()), 'Parameters')]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", heading)
    _screenshot(browser, tmp_path / "mlflow_ui_logged_model_params.png")

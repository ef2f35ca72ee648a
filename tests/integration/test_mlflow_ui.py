"""The MLflow UI, opened in a real headless browser, shows both datasets' runs and their `.tflite` files.

Starts a real `mlflow server` (SQLite store and artifact root under tmp_path, as `make ui` does),
logs one run per demo dataset over HTTP, then drives Debian's chromium through its chromedriver
(Selenium; no Selenium Manager download). Needs the system browser: `make browser`. Saves a
screenshot of the artifact view, also to $MOBILEDX_SCREENSHOT_DIR when that is set.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

DATASETS = ("demo-skin", "demo-blood")
ARTIFACT = "tflite/model_int8.tflite"
TIMEOUT = 60  # seconds for each element to appear
BROWSER_FIX = "run `make browser` (= apt-get install -y chromium chromium-driver)"


@pytest.fixture
def browser(tmp_path) -> Iterator[webdriver.Chrome]:
    """Headless Debian chromium driven by the matching chromedriver from the same distribution."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.fail(f"chromium and chromedriver must be on PATH for the MLflow UI test: {BROWSER_FIX}", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1600,1000", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(argument)
    # An explicit driver path means Selenium never runs Selenium Manager (no downloads).
    service = Service(executable_path=chromedriver, log_output=str(tmp_path / "chromedriver.log"))
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except WebDriverException as error:
        pytest.fail(f"cannot start headless chromium ({error.msg}); {BROWSER_FIX}", pytrace=False)
    try:
        yield driver
    finally:
        driver.quit()


def _log_demo_runs(url: str, model_file: Path) -> tuple[str, dict[str, str]]:
    """One finished run per demo dataset, as the pipeline logs them; returns experiment id and run ids."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    experiment_id = client.create_experiment("mobiledx")
    run_ids = {}
    for dataset in DATASETS:
        run = client.create_run(experiment_id, run_name=f"{dataset}-workspace", tags={"dataset": dataset})
        client.log_metric(run.info.run_id, "test_accuracy", 0.75)
        client.log_artifact(run.info.run_id, str(model_file), artifact_path=os.path.dirname(ARTIFACT))
        client.set_terminated(run.info.run_id)
        run_ids[dataset] = run.info.run_id
    return experiment_id, run_ids


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


def test_mlflow_ui_shows_runs_and_tflite_artifacts(browser, mlflow_server, tmp_path):
    model_file = tmp_path / Path(ARTIFACT).name
    model_file.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(120))  # a .tflite header; content is irrelevant
    url = mlflow_server.wait()
    experiment_id, run_ids = _log_demo_runs(url, model_file)
    run_names = [f"{dataset}-workspace" for dataset in DATASETS]

    # The experiment's runs table (the "Model training" view, not the GenAI default) lists both datasets.
    browser.get(f"{url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
    for name in run_names:
        _wait_for_text(browser, re.escape(name), f"run {name!r} in the runs table")

    # Each run's page shows its dataset tag; go there by clicking the run's link in the table.
    for dataset, name in zip(DATASETS, run_names):
        _click(browser, f"//a[normalize-space()='{name}']", f"link to run {name!r}")
        _wait_for_text(browser, rf"dataset\s*:\s*{re.escape(dataset)}", f"tag dataset={dataset} on the run page")
        assert f"/runs/{run_ids[dataset]}" in browser.current_url
        if dataset != DATASETS[-1]:
            browser.back()

    # The last run's Artifacts tab lists tflite/; opening it and selecting the model shows its full path.
    _click(browser, "//*[normalize-space(text())='Artifacts']", "Artifacts tab")
    for node in Path(ARTIFACT).parts:
        _click(browser, f"//*[@data-testid='artifact-tree-node'][normalize-space()='{node}']", f"artifact {node!r}")
    _wait_for_text(browser, rf"Path: \S*/{run_ids[DATASETS[-1]]}/artifacts/{re.escape(ARTIFACT)}",
                   f"details of the selected artifact {ARTIFACT}")
    assert ARTIFACT in _page_text(browser).splitlines()

    screenshot = tmp_path / "mlflow_ui_artifacts.png"
    assert browser.save_screenshot(str(screenshot))
    with Image.open(screenshot) as image:
        assert image.format == "PNG"
        assert image.width >= 1000 and image.height >= 500, image.size
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 24)) > 50, "screenshot looks blank"
    if os.environ.get("MOBILEDX_SCREENSHOT_DIR"):
        target = Path(os.environ["MOBILEDX_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(screenshot, target / screenshot.name)

"""The release page in the browser (`mobiledx app`): page load to first result, per-image time, agreement.

Serves a release folder with :mod:`mobiledx.release.webapp` and drives headless chromium on it (Debian's,
`make browser`, WebGL in software: SwiftShader; `make web` installs the page's npm package):

- load to first result: a cold browser (a fresh profile each time, nothing cached) opens the page and
  a photo is chosen as soon as the page has loaded; navigation start to the model ready and to the
  first scores shown (the page's own ``performance.now()``), median of ``--loads``;
- per image: each test image chosen in turn, in one page: decode + classify (what a user waits for)
  and MediaPipe's classify call alone, median. The baseline, in this process on the same files: the
  Python MediaPipe client (:class:`mobiledx.tflite.ondevice.OnDeviceClassifier`, which also decodes the file),
  its start (model load + first image) and its per-image time;
- agreement: top-1 agreement of the page's scores with the pipeline's reported probabilities
  (``data/evaluation/<dataset>/predictions.csv`` of ``--project``), with the released model's LiteRT run
  on the pipeline's pixels, and with the Python client; the largest score difference from each.

The test images are those of predictions.csv, their original files found through the project's ingest
manifest. ``--screenshot FILE`` saves the page (1280x900) showing the test image with the highest
probability of the operating point's class.

    python benchmarks/web_app.py RELEASE_DIR [--project .] [--loads 5] [--screenshot docs/img/web-app.png]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the browser helper of the tests, reused
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from mobiledx.release import webapp  # noqa: E402
from tests.support.browser import SOFTWARE_WEBGL, chromium  # noqa: E402

TIMEOUT = 120  # seconds for one page event
WINDOW = (1280, 900)


def test_images(project: Path, dataset: str, labels: list[str]) -> tuple[list[Path], np.ndarray]:
    """The original files of the test images and the probabilities evaluate reported for them."""
    predictions = pd.read_csv(project / f"data/evaluation/{dataset}/predictions.csv")
    manifest = pd.read_csv(project / f"data/ingested/{dataset}/manifest.csv").set_index("image_id")
    raw = project / "data" / "raw" / dataset
    files = [raw / manifest.loc[image_id, "path"] for image_id in predictions["image_id"]]
    return files, predictions[[f"p_{label}" for label in labels]].to_numpy()


def result(driver, count: int) -> dict:
    """The page's ``count``-th result: its data-* attributes, once shown."""
    script = "return {...document.getElementById('result').dataset, ...document.body.dataset}"
    return WebDriverWait(driver, TIMEOUT, poll_frequency=0.01).until(
        lambda d: (shown := d.execute_script(script)).get("count") == str(count) and shown)


def choose(driver, path: Path, count: int) -> dict:
    driver.find_element(By.ID, "file-input").send_keys(str(path))
    return result(driver, count)


def cold_load(url: str, photo: Path, workdir: Path) -> tuple[float, float]:
    """(ready, first result) in ms from navigation start, in a fresh browser."""
    with chromium(workdir, window_size=WINDOW, arguments=SOFTWARE_WEBGL) as driver:
        driver.get(url)
        shown = choose(driver, photo, 1)
    return float(shown["readyMs"]), float(shown["firstResultMs"])


def page_scores(url: str, files: list[Path], workdir: Path, screenshot: Path | None,
                operating_class: int | None) -> tuple[np.ndarray, list[float], list[float]]:
    """Every file through the page: scores, decode + classify ms, classify ms; then the screenshot."""
    rows, image_ms, classify_ms = [], [], []
    with chromium(workdir, window_size=WINDOW, arguments=SOFTWARE_WEBGL) as driver:
        driver.get(url)
        for count, path in enumerate(files, start=1):
            shown = choose(driver, path, count)
            rows.append(json.loads(shown["scores"]))
            image_ms.append(float(shown["imageMs"]))
            classify_ms.append(float(shown["classifyMs"]))
        if screenshot:
            pick = int(np.argmax(np.array(rows)[:, operating_class])) if operating_class is not None else 0
            choose(driver, files[pick], len(files) + 1)
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",  # the viewport itself, not the window
                                   {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False})
            driver.execute_script("window.scrollTo(0, 0)")
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(screenshot))
    return np.array(rows), image_ms[1:], classify_ms[1:]  # the first image also warms MediaPipe up


def python_client(model: bytes, num_classes: int, files: list[Path]) -> tuple[np.ndarray, float, list[float]]:
    """The Python MediaPipe client on the same files: scores, start (load + first image) ms, per-image ms."""
    from mediapipe.tasks.python import vision  # noqa: F401 - imported before the clock starts, as in an app

    from mobiledx.tflite.ondevice import OnDeviceClassifier

    started = time.perf_counter()
    with OnDeviceClassifier(model, num_classes) as client:
        rows = [client.classify_file(files[0])]
        start_ms = 1000 * (time.perf_counter() - started)
        per_image = []
        for path in files[1:]:
            began = time.perf_counter()
            rows.append(client.classify_file(path))
            per_image.append(1000 * (time.perf_counter() - began))
    return np.stack(rows), start_ms, per_image


def litert_scores(model: Path, files: list[Path]) -> np.ndarray:
    """The released model run by LiteRT on the pipeline's own pixels."""
    from mobiledx.data.images import load_image
    from mobiledx.tflite.conversion import TFLiteClassifier

    classifier = TFLiteClassifier(model)
    return np.concatenate([classifier.predict(load_image(path, classifier.image_size)[None]) for path in files])


def compare(name: str, page: np.ndarray, other: np.ndarray) -> str:
    agreement = np.mean(page.argmax(1) == other.argmax(1))
    return f"  vs {name:44s} top-1 agreement {agreement:.4f} ({int(np.sum(page.argmax(1) != other.argmax(1)))} " \
           f"differ), largest score difference {np.abs(page - other).max():.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("release", type=Path, help="a release folder (`mobiledx release <dataset>`)")
    parser.add_argument("--project", type=Path, default=REPO, help="the project whose test images are used")
    parser.add_argument("--loads", type=int, default=5, help="cold page loads timed (default: %(default)s)")
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of the page here (PNG)")
    args = parser.parse_args()

    manifest = json.loads((args.release / "release.json").read_text())
    labels, point = manifest["labels"], manifest.get("operating_point")
    files, reported = test_images(args.project, manifest["dataset"], labels)
    model = args.release / "model.tflite"
    print(f"{manifest['dataset']} version {manifest['version']}, {manifest['variant']}, {len(files)} test images; "
          f"headless chromium, MediaPipe Tasks for Web on the CPU (WASM)")
    with webapp.serving(args.release) as url, tempfile.TemporaryDirectory(prefix="mobiledx-web-bench-") as scratch:
        loads = [cold_load(url, files[0], Path(scratch) / f"load{i}") for i in range(args.loads)]
        page, image_ms, classify_ms = page_scores(url, files, Path(scratch) / "scores", args.screenshot,
                                                  labels.index(point["class"]) if point else None)
    python, python_start, python_ms = python_client(model.read_bytes(), len(labels), files)

    ready, first = (statistics.median(times) for times in zip(*loads))
    print(f"page load to first result (cold browser, median of {args.loads}): {first:.0f} ms (model ready at "
          f"{ready:.0f} ms); each: {', '.join(f'{t:.0f}' for _, t in loads)} ms")
    print(f"  baseline, Python MediaPipe client: load + first image {python_start:.0f} ms")
    page_ms, baseline_ms = statistics.median(image_ms), statistics.median(python_ms)
    print(f"per image (median of {len(image_ms)}): page decode + classify {page_ms:.1f} ms (MediaPipe classify "
          f"{statistics.median(classify_ms):.1f} ms); baseline, Python client decode + classify {baseline_ms:.1f} ms: "
          f"page/baseline {page_ms / baseline_ms:.2f}x")
    print(f"agreement of the page's scores (sums to 1 within {np.abs(page.sum(1) - 1).max():.1g}):")
    print(compare("the pipeline's reported probabilities", page, reported))
    print(compare("its LiteRT run on the pipeline's pixels", page, litert_scores(model, files)))
    print(compare("the Python MediaPipe client (its decoding)", page, python))
    if args.screenshot:
        print(f"screenshot: {args.screenshot} ({args.screenshot.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()

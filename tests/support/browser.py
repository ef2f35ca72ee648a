"""Headless Debian chromium driven by the matching chromedriver of the same distribution (Selenium), for the
browser tests and benchmarks. Needs both on PATH: `make browser`.

The driver is started with an explicit chromedriver path, so Selenium never runs Selenium Manager
(which would download a browser or driver).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service

BROWSER_FIX = "run `make browser` (= apt-get install -y chromium chromium-driver)"
# WebGL for pages that need it (MediaPipe Tasks for Web, even on its CPU delegate): without a GPU, chromium
# renders WebGL with SwiftShader only when asked to (its automatic fallback is deprecated).
SOFTWARE_WEBGL = ("--enable-unsafe-swiftshader",)


class BrowserUnavailable(RuntimeError):
    """chromium or chromedriver is missing or does not start; the message names the fix."""


def start_chromium(workdir: Path, *, window_size: tuple[int, int] = (1600, 1000), arguments: Sequence[str] = (),
                   network_log: bool = False) -> webdriver.Chrome:
    """A headless chromium with its profile in ``workdir`` (made if missing; chromedriver's log there too) and
    the extra command-line ``arguments``; with ``network_log``, every request is recorded in the "performance"
    log (``driver.get_log("performance")``, DevTools ``Network.*`` events)."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        raise BrowserUnavailable(f"chromium and chromedriver must be on PATH for the browser tests: {BROWSER_FIX}")
    workdir.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={window_size[0]},{window_size[1]}",
                     f"--user-data-dir={workdir / 'chromium-profile'}", *arguments):
        options.add_argument(argument)
    if network_log:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    service = Service(executable_path=chromedriver, log_output=str(workdir / "chromedriver.log"))
    try:
        return webdriver.Chrome(service=service, options=options)
    except WebDriverException as error:
        raise BrowserUnavailable(f"cannot start headless chromium ({error.msg}); {BROWSER_FIX}") from error


@contextmanager
def chromium(workdir: Path, **settings) -> Iterator[webdriver.Chrome]:
    """:func:`start_chromium`, quit when the block ends."""
    driver = start_chromium(workdir, **settings)
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def chromium_for_test(workdir: Path, **settings) -> Iterator[webdriver.Chrome]:
    """:func:`chromium` in a test: a browser that cannot start fails the test with the fix, not a traceback."""
    try:
        with chromium(workdir, **settings) as driver:
            yield driver
    except BrowserUnavailable as error:
        pytest.fail(str(error), pytrace=False)

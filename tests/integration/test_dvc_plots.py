"""`dvc plots show` renders the evaluation plots, the error galleries included, as a page a browser
displays: every gallery image is on the page and decodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.browser import chromium_for_test
from tests.support.project import DATASETS, copy_project, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(built_project, tmp_path_factory) -> Path:
    return copy_project(built_project, tmp_path_factory.mktemp("plots") / "project")


def test_dvc_plots_show_renders_every_class_gallery_in_a_browser(project, tmp_path):
    out = tmp_path / "plots"
    run(["dvc", "plots", "show", "--out", str(out)], project)
    expected = {dataset: len((project / f"data/export/{dataset}/labels.txt").read_text().split())
                for dataset in DATASETS}
    with chromium_for_test(tmp_path) as browser:
        browser.get((out / "index.html").as_uri())
        images = browser.execute_script(
            "return [...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth]);")
    for dataset, classes in expected.items():
        # DVC copies each image to static/<revision>_data_evaluation_<dataset>_gallery_<file>
        gallery = [(src, width) for src, width in images if f"evaluation_{dataset}_gallery_" in src.replace("/", "_")]
        assert len(gallery) == classes, f"{dataset}: {len(gallery)} gallery images on the page, {classes} classes"
        assert all(width and width > 100 for _, width in gallery), gallery  # each one decoded

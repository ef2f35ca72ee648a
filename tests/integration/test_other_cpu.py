"""The data stages give the same bytes on another CPU, so `dvc repro` there re-runs only what training touches.

Another machine is emulated on this one (``tests.support.emulated_cpus``: NumPy's and libjpeg-turbo's
SIMD kernels off, oneDNN capped at AVX2, one TensorFlow/BLAS thread, one decode worker). Every data
stage re-run there must write exactly the bytes the built project recorded in its dvc.lock.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support import emulated_cpus
from tests.support.project import DATASETS, copy_project, run

pytestmark = pytest.mark.slow

DATA_STAGES = ["make_demo", "ingest_external@demo-clinic",
               *(f"{stage}@{dataset}" for dataset in DATASETS
                 for stage in ("ingest", "validate", "split", "rebalance"))]


def locked_outputs(project: Path) -> dict[str, str]:
    stages = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    return {out["path"]: out["md5"] for name in DATA_STAGES for out in stages[name].get("outs", [])}


def test_data_stages_give_identical_bytes_on_another_cpu(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "project")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["ingest"]["workers"] = 1  # another core count: the decode workers' scheduling must not matter
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in DATA_STAGES:
        run(["dvc", "repro", "--force", "--single-item", stage], project, env=emulated_cpus()["x86-64-v2"])
    recorded, written = locked_outputs(built_project), locked_outputs(project)
    assert len(recorded) >= 3 + 4 + 4 * len(DATASETS)
    assert {path: md5 for path, md5 in written.items() if recorded[path] != md5} == {}

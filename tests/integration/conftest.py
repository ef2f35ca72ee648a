"""Integration fixtures: the tiny pipeline is built ONCE per session, and every test module that changes
anything works on its own copy (``tests.support.project.copy_project``).

- ``built_project`` (session): a throwaway git + DVC repository holding the pipeline with the TINY
  params, after every stage of both demo datasets ran once (the two datasets' chains in parallel),
  committed. Treat it as READ-ONLY.
- ``mlflow_server``: a real `mlflow server` on 127.0.0.1 with its own store, started when the test
  starts; ``.wait()`` returns its URL once it answers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.project import FIRST_REPRO_LOG, MlflowServer, make_project, reproduce_datasets_in_parallel, run


@pytest.fixture(scope="session")
def built_project(tmp_path_factory) -> Path:
    """The tiny pipeline after one successful reproduction of both demo datasets (every stage run
    once, see ``reproduce_datasets_in_parallel``), committed. Read-only: use ``copy_project`` before
    changing anything. The reproduction's output is in ``first_repro``."""
    root = make_project(tmp_path_factory.mktemp("built") / "project")
    output = reproduce_datasets_in_parallel(root)
    (root.parent / FIRST_REPRO_LOG).write_text(output)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "repro"], root)
    return root


@pytest.fixture(scope="session")
def first_repro(built_project) -> str:
    """stdout + stderr of the ``dvc repro`` commands that built ``built_project``."""
    return (built_project.parent / FIRST_REPRO_LOG).read_text()


@pytest.fixture
def mlflow_server(tmp_path):
    """A fresh ``MlflowServer`` under tmp_path, started with the test and stopped afterwards."""
    server = MlflowServer(tmp_path / "mlflow-server")
    try:
        yield server
    finally:
        server.stop()


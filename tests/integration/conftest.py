"""Integration fixtures: the tiny pipeline is built ONCE per session, and every test module that changes
anything works on its own copy (``tests.support.project.copy_project``).

- ``built_project`` (session): a throwaway git + DVC repository holding the pipeline with the TINY
  params, after every stage of both demo datasets ran once (the two datasets' chains in parallel),
  committed. Treat it as READ-ONLY.
- ``mlflow_server``: a real `mlflow server` on 127.0.0.1 with its own store, started when the test
  starts; ``.wait()`` returns its URL once it answers.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from filelock import FileLock

from tests.support.project import FIRST_REPRO_LOG, MlflowServer, make_project, reproduce_datasets_in_parallel, run


@pytest.fixture(scope="session")
def built_project(tmp_path_factory, worker_id) -> Path:
    """The tiny pipeline after one successful reproduction of both demo datasets (every stage run
    once, see ``reproduce_datasets_in_parallel``), committed. Read-only: use ``copy_project`` before
    changing anything. The reproduction's output is in ``first_repro``.

    Under pytest-xdist (``make test`` runs two workers) the first worker that needs it builds it in
    the folder the workers share; the others wait for that build and read it."""
    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    root = shared / "built" / "project"
    with FileLock(shared / "built.lock"):
        if not (root.parent / FIRST_REPRO_LOG).is_file():
            shutil.rmtree(root.parent, ignore_errors=True)  # a build that failed half-way
            make_project(root)
            output = reproduce_datasets_in_parallel(root)
            run(["git", "add", "-A"], root)
            run(["git", "commit", "-q", "-m", "repro"], root)
            (root.parent / FIRST_REPRO_LOG).write_text(output)  # last: marks the build complete
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


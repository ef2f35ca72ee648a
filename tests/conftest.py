"""Shared fixtures: tiny images and datasets written in the real datasets' layouts (helpers in tests.support),
a port where connections are refused."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.support import ham_rows, write_cnmc, write_ham10000
from tests.support.ports import refusing_port

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture
def ham_dir(tmp_path) -> Path:
    return write_ham10000(tmp_path / "ham", ham_rows())


@pytest.fixture
def cnmc_dir(tmp_path) -> Path:
    subjects = {str(n): "all" for n in (3, 5, 7, 11)} | {f"H{n}": "hem" for n in (2, 4)}
    return write_cnmc(tmp_path / "cnmc", subjects)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def refused_port():
    """A port on 127.0.0.1 where connections are refused for the whole test (nothing else can listen on it)."""
    with refusing_port() as port:
        yield port

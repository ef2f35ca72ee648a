"""Paper 000's study as ONE command: comma-separated `-S` values queue the whole grid."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import REPO_ROOT

GRID = {
    "lr": ["0.001", "0.0001", "1e-05"],
    "train.epochs": ["50", "75"],
    "train.augmentation": ["none", "paper000"],
    "rebalance.train_fraction": ["1.0", "0.5"],
}


def dvc(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_one_queue_command_queues_the_full_paper_000_grid(tmp_path):
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    for folder in ("stages", "src"):
        shutil.copytree(
            REPO_ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    for command in (
        ["init", "-q", "-b", "main"],
        ["config", "user.email", "t@example.com"],
        ["config", "user.name", "t"],
    ):
        subprocess.run(["git", *command], cwd=tmp_path, check=True)
    dvc(["init", "-q"], tmp_path)
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(["git", "commit", "-qm", "pipeline"], cwd=tmp_path, check=True)

    sets = [arg for key, values in GRID.items() for arg in ("-S", f"{key}={','.join(values)}")]
    output = dvc(["exp", "run", "--queue", *sets], tmp_path)

    queued = [
        dict(item.split("=", 1) for item in re.findall(r"'([\w.]+=[^']+)'", overrides))
        for overrides in re.findall(r"Queueing with overrides '\{'params.yaml': \[(.*?)\]\}'", output)
    ]
    expected = [dict(zip(GRID, combination)) for combination in itertools.product(*GRID.values())]
    assert len(queued) == 24
    assert sorted(map(sorted, (q.items() for q in queued))) == sorted(map(sorted, (e.items() for e in expected)))
    status = dvc(["queue", "status"], tmp_path)
    assert status.count("Queued") == 24
    dvc(["queue", "remove", "--queued"], tmp_path)
    assert "Queued" not in dvc(["queue", "status"], tmp_path)

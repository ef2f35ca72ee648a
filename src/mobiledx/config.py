"""Reading ``params.yaml`` and the on-disk layout of every dataset's pipeline outputs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PARAMS_FILE = "params.yaml"
UNKNOWN_LICENSE = "not stated (set datasets.<name>.license in params.yaml)"


def load_params(path: str | os.PathLike = DEFAULT_PARAMS_FILE) -> dict[str, Any]:
    """Load ``params.yaml`` as a dict."""
    with open(path, encoding="utf-8") as handle:
        params = yaml.safe_load(handle) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(params).__name__}")
    return params


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset registered under ``datasets:``: ``<name>: {kind: <adapter>, path: <raw folder>}``.

    ``synthetic: true`` (optional, default false) marks artificial data such as the demo datasets; the
    model card then states that the model has no clinical meaning. ``license`` (optional) is the data's
    licence, stated in the model card and in the ``.tflite`` metadata (e.g. ``CC BY-NC-SA 4.0`` for HAM10000).
    """

    name: str
    kind: str
    path: Path
    synthetic: bool = False
    license: str = UNKNOWN_LICENSE


def dataset_entry(params: dict[str, Any], dataset: str) -> DatasetEntry:
    """The registration of ``dataset`` in params.yaml, with a clear error when it is missing or incomplete."""
    datasets = params.get("datasets") or {}
    if dataset not in datasets:
        known = ", ".join(sorted(datasets)) or "none"
        raise KeyError(f"dataset {dataset!r} is not registered under 'datasets:' in params.yaml (registered: {known})")
    entry = datasets[dataset]
    if not isinstance(entry, dict) or not {"kind", "path"} <= set(entry):
        raise ValueError(f"datasets.{dataset} must be a mapping with 'kind' and 'path', got {entry!r}")
    synthetic = entry.get("synthetic", False)
    if not isinstance(synthetic, bool):
        raise ValueError(f"datasets.{dataset}.synthetic must be true or false, got {synthetic!r}")
    return DatasetEntry(name=dataset, kind=str(entry["kind"]), path=Path(str(entry["path"])), synthetic=synthetic,
                        license=str(entry.get("license") or UNKNOWN_LICENSE))


@dataclass(frozen=True)
class DatasetPaths:
    """Where each stage reads and writes for one dataset (relative to the repository root)."""

    name: str
    root: Path = Path(".")

    @property
    def demo_raw(self) -> Path:
        """Where ``make_demo`` writes a demo dataset (real datasets live where params.yaml says)."""
        return self.root / "data" / "raw" / self.name

    @property
    def ingested(self) -> Path:
        return self.root / "data" / "ingested" / self.name

    @property
    def validated(self) -> Path:
        return self.root / "data" / "validated" / self.name

    @property
    def split(self) -> Path:
        return self.root / "data" / "split" / self.name

    @property
    def rebalanced(self) -> Path:
        return self.root / "data" / "rebalanced" / self.name

    @property
    def model(self) -> Path:
        return self.root / "data" / "models" / self.name

    @property
    def evaluation(self) -> Path:
        return self.root / "data" / "evaluation" / self.name

    @property
    def export(self) -> Path:
        return self.root / "data" / "export" / self.name


def parse_stage_args(description: str, argv: list[str] | None = None, with_dataset: bool = True):
    """Common stage CLI: ``python stages/<verb>.py [DATASET] [--params params.yaml]``."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    if with_dataset:
        parser.add_argument("dataset", help="dataset name registered under 'datasets:' in params.yaml")
    parser.add_argument("--params", default=DEFAULT_PARAMS_FILE, help="params file (default: %(default)s)")
    args = parser.parse_args(argv)
    return args, load_params(args.params)

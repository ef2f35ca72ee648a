"""The data a training used, as MLflow datasets: one input per split (train, val, test) of the run.

The MLflow UI's *Dataset* column and its filters (``dataset.name``, ``dataset.digest``,
``dataset.context``) then tell runs on different data apart. Each split is logged as

- **name**: the dataset's name in ``params.yaml`` (``demo-skin``);
- **digest**: 12 hex digits of a SHA-256 over the split's images (their content hashes and labels,
  sorted): a change of data or of split changes it. MLflow identifies a dataset by (name, digest)
  and keeps one context per pair, so each split needs its own digest;
- **source**: the raw data folder; **context**: ``train`` / ``val`` / ``test``;
- **profile**: the raw data's SHA-256 (``dataset.json``'s ``raw_hash``, the same in the three
  splits), images, groups and images per class;
- **schema**: the manifest's columns.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.data.dataset import Dataset
from mlflow.data.sources import LocalArtifactDatasetSource
from mlflow.types import ColSpec, DataType, Schema

SPLITS = ("train", "val", "test")
DIGEST_LENGTH = 12  # MLflow allows 36 characters; the UI shows "name (digest)"
LOG_ATTEMPTS = 3  # log_inputs calls when concurrent runs race to insert the same dataset


def split_digest(images: pd.DataFrame) -> str:
    """The digest of one split: SHA-256 over its images' sorted ``sha256:label`` pairs, shortened."""
    entries = sorted(f"{sha}:{label}" for sha, label in zip(images["sha256"], images["label"]))
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()[:DIGEST_LENGTH]


class ImageDataset(Dataset):
    """An image collection described by its manifest: digest, source, schema and profile given, not computed."""

    def __init__(self, source, name: str, digest: str, profile: dict, schema) -> None:
        self._profile, self._schema = profile, schema
        super().__init__(source=source, name=name, digest=digest)

    def _compute_digest(self) -> str:  # never used: the digest is always given
        return hashlib.sha256(json.dumps(self._profile, sort_keys=True).encode()).hexdigest()[:DIGEST_LENGTH]

    @property
    def profile(self) -> dict:
        return self._profile

    @property
    def schema(self):
        return self._schema

    def to_dict(self) -> dict[str, str]:
        described = super().to_dict()
        described["schema"] = json.dumps({"mlflow_colspec": self._schema.to_dict()})
        described["profile"] = json.dumps(self._profile)
        return described


def _schema(manifest: pd.DataFrame) -> Schema:
    def kind(column: str) -> DataType:
        return DataType.double if pd.api.types.is_float_dtype(manifest[column]) else (
            DataType.long if pd.api.types.is_integer_dtype(manifest[column]) else DataType.string)

    return Schema([ColSpec(kind(column), column) for column in manifest.columns])


def split_datasets(name: str, raw_path: Path, info: dict, manifest: pd.DataFrame, assignment: pd.DataFrame) -> list:
    """The MLflow datasets of the train, val and test splits (see the module docstring), in that order."""
    source = LocalArtifactDatasetSource(str(Path(raw_path).resolve()))
    schema = _schema(manifest)
    rows = manifest.set_index("image_id")
    datasets = []
    for split in SPLITS:
        chosen = assignment[assignment["split"] == split]
        images = rows.loc[chosen["image_id"], ["sha256"]].assign(label=chosen["label"].to_numpy())
        profile = {
            "split": split,
            "images": int(len(chosen)),
            "groups": int(chosen["group_id"].nunique()),
            "images_per_class": {str(k): int(v) for k, v in chosen["label"].value_counts().sort_index().items()},
            "raw_data_sha256": info["raw_hash"],
            "image_size": int(info["image_size"]),
            "kind": info["kind"],
        }
        datasets.append(ImageDataset(source, name, split_digest(images), profile, schema))
    return datasets


def log_split_inputs(name: str, raw_path: Path, info: dict, manifest: pd.DataFrame, assignment: pd.DataFrame) -> None:
    """Log the three splits as inputs of the active run (contexts ``train``, ``val``, ``test``).

    Two runs logging the same splits for the first time at the same moment (``dvc queue start -j 2``)
    race in MLflow's store: both find the dataset missing, the second insert breaks its unique key
    and the whole call is rolled back. Then the dataset exists, so the call is simply made again.
    """
    datasets = split_datasets(name, raw_path, info, manifest, assignment)
    tags = {"raw_data_sha256": info["raw_hash"], "raw_path": str(raw_path)}
    for attempt in range(1, LOG_ATTEMPTS + 1):
        try:
            mlflow.log_inputs(datasets=datasets, contexts=list(SPLITS), tags_list=[tags] * len(datasets))
            return
        except Exception as error:
            if attempt == LOG_ATTEMPTS or not _lost_insert_race(error):
                raise
            time.sleep(0.5 * attempt)


def _lost_insert_race(error: Exception) -> bool:
    """The store refused a dataset row another run inserted first (SQLite's or PostgreSQL's unique-key error)."""
    text = str(error)
    return "datasets" in text and ("UNIQUE constraint failed" in text or "duplicate key value" in text)

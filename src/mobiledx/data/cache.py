"""Reading ingest's outputs back: the cached image array, the manifest and the split assignment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mobiledx.config import DatasetPaths
from mobiledx.data.manifest import read_manifest
from mobiledx.io import read_json


@dataclass
class IngestedDataset:
    """One dataset as ingest left it, plus its split assignment."""

    name: str
    info: dict  # ingest's dataset.json: kind, classes, image_size, raw_hash, counts
    manifest: pd.DataFrame
    images: np.ndarray  # (N, size, size, 3) uint8, row i <-> manifest row i
    assignment: pd.DataFrame  # image_id, group_id, label, split

    @property
    def classes(self) -> list[str]:
        return list(self.info["classes"])

    def rows(self, image_ids: pd.Series) -> np.ndarray:
        """Positions in ``images`` of the given image ids (a clear error for unknown ids)."""
        position = pd.Series(np.arange(len(self.manifest)), index=self.manifest["image_id"])
        missing = set(image_ids) - set(position.index)
        if missing:
            raise KeyError(f"{self.name}: {len(missing)} image id(s) not in the manifest, e.g. {sorted(missing)[:3]}")
        return position.loc[image_ids].to_numpy()

    def split(self, name: str) -> pd.DataFrame:
        return self.assignment[self.assignment["split"] == name].reset_index(drop=True)

    def class_indices(self, labels: pd.Series) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[label] for label in labels], dtype=np.int64)


def load_ingested(paths: DatasetPaths) -> IngestedDataset:
    """Load ``data/ingested/<name>`` and ``data/split/<name>/split.csv``."""
    return IngestedDataset(
        name=paths.name,
        info=read_json(paths.ingested / "dataset.json"),
        manifest=read_manifest(paths.ingested / "manifest.csv"),
        images=np.load(Path(paths.ingested) / "images.npy", allow_pickle=False),
        assignment=pd.read_csv(paths.split / "split.csv", dtype=str, keep_default_na=False),
    )

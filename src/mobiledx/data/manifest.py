"""The manifest: one row per ingested image, the contract between ingest and every later stage.

Row ``i`` of the manifest is image ``i`` of the cached image array written by ingest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MANIFEST_COLUMNS = [
    "image_id",  # unique id within the dataset (HAM10000: ISIC_0024306)
    "path",  # source file, relative to the dataset's raw root
    "label",  # class name from the dataset's vocabulary
    "group_id",  # lesion / subject / patient: splits never separate a group
    "age",  # float years, NaN when unknown
    "sex",  # male | female | unknown
    "site",  # anatomical site / localization, "unknown" when unknown
    "sha256",  # content hash of the raw file
    "source_split",  # the distributor's own split (train | val | test), "" when it has none
]

QUARANTINE_COLUMNS = ["image_id", "path", "reason"]


@dataclass
class ScanResult:
    """What an adapter finds in a raw dataset folder before any image is decoded."""

    records: pd.DataFrame  # MANIFEST_COLUMNS except sha256
    quarantine: pd.DataFrame  # QUARANTINE_COLUMNS
    classes: list[str]
    pixels: dict[str, np.ndarray] | None = None  # image_id -> array, for datasets shipped as arrays


def empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype="object") for column in QUARANTINE_COLUMNS})


def read_manifest(path) -> pd.DataFrame:
    """Read a manifest CSV with stable dtypes (ids and labels as strings, age as float)."""
    frame = pd.read_csv(
        path,
        dtype={"image_id": str, "path": str, "label": str, "group_id": str, "sex": str, "site": str, "sha256": str,
               "source_split": str},
        keep_default_na=False,
        na_values={"age": [""]},
    )
    frame["age"] = frame["age"].astype(float)
    return frame

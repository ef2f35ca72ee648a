"""The manifest: one row per ingested image, the contract between ingest and every later stage.

Row ``i`` of the manifest is image ``i`` of the cached image array written by ingest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mobiledx.params import LabelPolicy

MANIFEST_COLUMNS = [
    "image_id",  # unique id within the dataset (HAM10000: ISIC_0024306)
    "path",  # source file, relative to the dataset's raw root
    "label",  # class name from the dataset's vocabulary
    "group_id",  # what splits keep together: patient, lesion or image (datasets.<name>.group_by)
    "lesion_id",  # the source's lesion id, "" when it has none
    "patient_id",  # the source's patient / subject id, "" when it has none
    "age",  # float years, NaN when unknown
    "sex",  # male | female | unknown
    "site",  # anatomical site / localization, "unknown" when unknown
    "sha256",  # content hash of the raw file
    "source_split",  # the distributor's own split (train | val | test), "" when it has none
    "width",  # of the original image, pixels
    "height",
    "license",  # the image's licence, when the source states one per image (ISIC Archive: CC-0, CC-BY, CC-BY-NC)
    "attribution",  # whom to credit, when the source says
]
# What adapters return per image: the manifest's columns that exist before decoding, metadata as raw text.
RECORD_COLUMNS = ["image_id", "path", "label", "lesion_id", "patient_id", "age", "sex", "site", "source_split",
                  "license", "attribution"]

QUARANTINE_COLUMNS = ["image_id", "path", "reason"]
# Files that are neither images nor refused inputs: the metadata tables an adapter reads, and the companion
# files that downloads ship (licences, attributions, Kaggle's hmnist_*.csv, Thumbs.db, __MACOSX/, identical
# copies of a folder ...). Listed with why, so that every file is accounted for; never counted as quarantined.
IGNORED_COLUMNS = ["path", "reason"]


@dataclass(frozen=True)
class ScanOptions:
    """What a dataset's entry in params.yaml tells its adapter."""

    labels: LabelPolicy = LabelPolicy()


@dataclass
class ScanResult:
    """What an adapter finds in a raw dataset folder before any image is decoded."""

    records: pd.DataFrame  # RECORD_COLUMNS, metadata as raw text
    quarantine: pd.DataFrame  # QUARANTINE_COLUMNS
    classes: list[str]
    pixels: dict[str, np.ndarray] | None = None  # image_id -> array, for datasets shipped as arrays
    notes: list[str] = field(default_factory=list)  # what the user should know (e.g. a partial download)
    normalised: dict[str, int] = field(default_factory=dict)  # label normalisations the adapter did, counted
    ignored: pd.DataFrame = field(default_factory=lambda: empty_ignored())  # IGNORED_COLUMNS


def empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype="object") for column in QUARANTINE_COLUMNS})


def empty_ignored() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype="object") for column in IGNORED_COLUMNS})


def read_manifest(path) -> pd.DataFrame:
    """Read a manifest CSV with stable dtypes (ids, labels and text as strings, age as float)."""
    text = ["image_id", "path", "label", "group_id", "lesion_id", "patient_id", "sex", "site", "sha256",
            "source_split", "license", "attribution"]
    frame = pd.read_csv(path, dtype={column: str for column in text}, keep_default_na=False, na_values={"age": [""]})
    frame["age"] = frame["age"].astype(float)
    return frame


# The adapters' reason for an image the metadata lists but no file holds: ingest counts these into
# dataset.json's n_missing_files, and validate sets them apart under validate.missing_files.
LISTED_WITHOUT_FILE = re.compile(r"listed in .+ but no file found$")

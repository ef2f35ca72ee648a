"""Dataset adapters: read a raw dataset exactly as it is distributed into manifest records.

An adapter is a function ``scan(raw_dir) -> ScanResult`` registered under a *kind* with
:func:`register`. It lists images and their labels/metadata without decoding pixels; every file
or metadata row it cannot use becomes a quarantine entry with its reason (nothing is dropped
silently). Decoding, hashing and resizing happen afterwards in :mod:`mobiledx.data.ingest`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mobiledx.data.manifest import QUARANTINE_COLUMNS, ScanResult

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}

Adapter = Callable[[Path], ScanResult]
_REGISTRY: dict[str, Adapter] = {}


def register(kind: str) -> Callable[[Adapter], Adapter]:
    """Decorator registering an adapter function under ``kind`` (the value used in params.yaml)."""

    def decorate(function: Adapter) -> Adapter:
        _REGISTRY[kind] = function
        return function

    return decorate


def get_adapter(kind: str) -> Adapter:
    """The adapter registered for ``kind``; a clear error listing the known kinds otherwise."""
    if kind not in _REGISTRY:
        raise KeyError(f"unknown dataset kind {kind!r}; known kinds: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[kind]


def known_kinds() -> list[str]:
    return sorted(_REGISTRY)


class _Quarantine:
    """Collects refused inputs with their reason."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, image_id: str, path: str, reason: str) -> None:
        self.rows.append({"image_id": image_id, "path": path, "reason": reason})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=QUARANTINE_COLUMNS)


def _index_images(raw_dir: Path, quarantine: _Quarantine) -> dict[str, list[Path]]:
    """Map file stem -> image files under ``raw_dir``; refuse links that escape the dataset root."""
    root = raw_dir.resolve()
    by_stem: dict[str, list[Path]] = {}
    for path in sorted(raw_dir.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        relative = path.relative_to(raw_dir).as_posix()
        if not path.resolve().is_relative_to(root):
            quarantine.add(path.stem, relative, "path resolves outside the dataset root")
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(path.stem, []).append(path)
    return by_stem


def _find_one(raw_dir: Path, name: str) -> Path:
    matches = sorted(p for p in raw_dir.rglob("*") if p.is_file() and p.name.lower() == name.lower())
    if not matches:
        raise FileNotFoundError(f"{raw_dir}: no {name} found; is this the right dataset folder and kind?")
    if len(matches) > 1:
        listed = ", ".join(str(p) for p in matches)
        raise ValueError(f"{raw_dir}: several {name} files ({listed}); keep exactly one")
    return matches[0]


HAM10000_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
HAM10000_REQUIRED_COLUMNS = ["lesion_id", "image_id", "dx"]


def _clean_category(values: pd.Series) -> pd.Series:
    cleaned = values.fillna("").astype(str).str.strip().str.lower()
    return cleaned.mask(cleaned == "", "unknown")


@register("ham10000")
def scan_ham10000(raw_dir: Path) -> ScanResult:
    """HAM10000: ``HAM10000_metadata.csv`` plus ``ISIC_*.jpg`` anywhere below the root.

    Handles the distributed ``HAM10000_images_part_1/`` + ``_part_2/`` folders, a single folder,
    lowercase names and class sub-folders alike, since images are found by ``image_id``.
    """
    raw_dir = Path(raw_dir)
    quarantine = _Quarantine()
    metadata_path = _find_one(raw_dir, "HAM10000_metadata.csv")
    metadata = pd.read_csv(metadata_path, dtype=str, keep_default_na=False)
    missing = [c for c in HAM10000_REQUIRED_COLUMNS if c not in metadata.columns]
    if missing:
        raise ValueError(f"{metadata_path}: missing required column(s) {missing}; found {list(metadata.columns)}")
    images = _index_images(raw_dir, quarantine)

    records = []
    listed: set[str] = set()
    for row in metadata.itertuples(index=False):
        image_id = str(row.image_id).strip()
        label = str(row.dx).strip().lower()
        if image_id in listed:
            quarantine.add(image_id, "", "image_id listed more than once in the metadata")
            continue
        listed.add(image_id)
        files = images.get(image_id, [])
        if not files:
            quarantine.add(image_id, "", "image listed in the metadata but no file found")
            continue
        if len(files) > 1:
            paths = ", ".join(p.relative_to(raw_dir).as_posix() for p in files)
            quarantine.add(image_id, paths, "several files for one image_id")
            continue
        relative = files[0].relative_to(raw_dir).as_posix()
        if label not in HAM10000_CLASSES:
            quarantine.add(image_id, relative, f"label {label!r} not in the HAM10000 vocabulary {HAM10000_CLASSES}")
            continue
        records.append(
            {
                "image_id": image_id,
                "path": relative,
                "label": label,
                "group_id": str(row.lesion_id).strip(),
                "age": getattr(row, "age", ""),
                "sex": getattr(row, "sex", ""),
                "site": getattr(row, "localization", ""),
            }
        )
    for stem, files in images.items():
        if stem not in listed:
            for path in files:
                quarantine.add(stem, path.relative_to(raw_dir).as_posix(), "image file not listed in the metadata")

    frame = pd.DataFrame(records, columns=["image_id", "path", "label", "group_id", "age", "sex", "site"])
    frame["age"] = pd.to_numeric(frame["age"].replace("", np.nan), errors="coerce").astype(float)
    frame["sex"] = _clean_category(frame["sex"])
    frame["site"] = _clean_category(frame["site"])
    return ScanResult(records=frame, quarantine=quarantine.frame(), classes=list(HAM10000_CLASSES))


CNMC_CLASSES = ["all", "hem"]
CNMC_FILE_NAME = re.compile(r"^UID_(H?)(\d+)_(\d+)_(\d+)_(all|hem)$", re.IGNORECASE)


@register("cnmc")
def scan_cnmc(raw_dir: Path) -> ScanResult:
    """C-NMC 2019 training layout: ``fold_k/{all,hem}/UID_<subject>_<image>_<cell>_<label>.bmp``.

    The subject id is the first token (healthy subjects carry an ``H`` prefix, stripped, so one
    person never lands on both sides of a split); the label comes from the class folder and must
    agree with the file name's suffix.
    """
    raw_dir = Path(raw_dir)
    quarantine = _Quarantine()
    images = _index_images(raw_dir, quarantine)
    records = []
    for stem, files in sorted(images.items()):
        for path in files:
            relative = path.relative_to(raw_dir).as_posix()
            folder = path.parent.name.lower()
            if folder not in CNMC_CLASSES or not path.parent.parent.name.lower().startswith("fold_"):
                quarantine.add(stem, relative, "not inside a fold_k/{all,hem}/ class folder")
                continue
            match = CNMC_FILE_NAME.match(stem)
            if match is None:
                quarantine.add(stem, relative, "file name does not follow UID_<subject>_<image>_<cell>_<label>")
                continue
            if match.group(5).lower() != folder:
                quarantine.add(stem, relative, f"file name says {match.group(5).lower()!r} but folder says {folder!r}")
                continue
            if len(files) > 1:
                quarantine.add(stem, relative, "several files share this image id")
                continue
            records.append(
                {
                    "image_id": stem,
                    "path": relative,
                    "label": folder,
                    "group_id": f"subject_{int(match.group(2))}",
                    "age": np.nan,
                    "sex": "unknown",
                    "site": "unknown",
                }
            )
    frame = pd.DataFrame(records, columns=["image_id", "path", "label", "group_id", "age", "sex", "site"])
    frame["age"] = frame["age"].astype(float)
    return ScanResult(records=frame, quarantine=quarantine.frame(), classes=list(CNMC_CLASSES))

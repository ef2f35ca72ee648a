"""The adapter registry and the helpers every adapter shares."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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


class Quarantine:
    """Collects refused inputs with their reason."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, image_id: str, path: str, reason: str) -> None:
        self.rows.append({"image_id": image_id, "path": path, "reason": reason})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=QUARANTINE_COLUMNS)


def index_images(raw_dir: Path, quarantine: Quarantine, metadata: tuple[Path, ...] = ()) -> dict[str, list[Path]]:
    """Map file stem -> image files under ``raw_dir``.

    Links that escape the dataset root and files that are neither images nor the dataset's
    ``metadata`` files are quarantined (hidden files such as ``.DS_Store`` are ignored).
    """
    root = raw_dir.resolve()
    expected = {m.resolve() for m in metadata}
    by_stem: dict[str, list[Path]] = {}
    for path in sorted(raw_dir.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        relative = path.relative_to(raw_dir).as_posix()
        if not path.resolve().is_relative_to(root):
            quarantine.add(path.stem, relative, "path resolves outside the dataset root")
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(path.stem, []).append(path)
        elif path.resolve() not in expected:
            quarantine.add(path.stem, relative, f"not an image file ({path.suffix or 'no extension'})")
    return by_stem


def records_frame(records: list[dict]) -> pd.DataFrame:
    """Manifest records with every column present and categorical metadata normalised."""
    frame = pd.DataFrame(
        records, columns=["image_id", "path", "label", "group_id", "age", "sex", "site", "source_split"]
    )
    frame["age"] = pd.to_numeric(frame["age"].replace("", np.nan), errors="coerce").astype(float)
    frame["sex"] = clean_category(frame["sex"])
    frame["site"] = clean_category(frame["site"])
    frame["source_split"] = frame["source_split"].fillna("").astype(str)
    return frame


def find_one(raw_dir: Path, name: str) -> Path:
    matches = sorted(p for p in raw_dir.rglob("*") if p.is_file() and p.name.lower() == name.lower())
    if not matches:
        raise FileNotFoundError(f"{raw_dir}: no {name} found; is this the right dataset folder and kind?")
    if len(matches) > 1:
        listed = ", ".join(str(p) for p in matches)
        raise ValueError(f"{raw_dir}: several {name} files ({listed}); keep exactly one")
    return matches[0]


def clean_category(values: pd.Series) -> pd.Series:
    """Lower-cased, stripped category values; empty becomes ``unknown`` (HAM10000's own convention)."""
    cleaned = values.fillna("").astype(str).str.strip().str.lower()
    return cleaned.mask(cleaned == "", "unknown")

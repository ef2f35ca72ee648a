"""The adapter registry and the helpers every adapter shares."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from mobiledx.data.manifest import QUARANTINE_COLUMNS, RECORD_COLUMNS, ScanOptions, ScanResult
from mobiledx.errors import MobiledxError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}

Adapter = Callable[[Path, ScanOptions], ScanResult]
_REGISTRY: dict[str, Adapter] = {}


class DatasetLayoutError(MobiledxError):
    """The raw folder is not what its ``kind`` expects (missing metadata, unknown kind, a link outside it)."""


def register(kind: str, *, label_policy: bool = False) -> Callable[[Adapter], Adapter]:
    """Decorator registering an adapter function under ``kind`` (the value used in params.yaml);
    ``label_policy``: it applies ``datasets.<name>.labels`` (the others take their classes from the layout)."""

    def decorate(function: Adapter) -> Adapter:
        function.label_policy = label_policy
        _REGISTRY[kind] = function
        return function

    return decorate


def get_adapter(kind: str) -> Adapter:
    """The adapter registered for ``kind``; a clear error listing the known kinds otherwise."""
    if kind not in _REGISTRY:
        raise DatasetLayoutError(f"unknown dataset kind {kind!r}. Fix: set datasets.<name>.kind in params.yaml to one "
                                 f"of {', '.join(sorted(_REGISTRY))}")
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


def dataset_files(raw_dir: Path) -> list[Path]:
    """Every file below ``raw_dir``, following symbolic links that stay inside it, sorted.

    Big datasets often live on another disk and are linked in. Linking the whole dataset folder
    works (the registered path is resolved first); a link to a folder OUTSIDE the registered folder,
    or a link loop, is a :class:`DatasetLayoutError` that names the link and the fix.
    """
    raw_dir = Path(raw_dir)
    root = raw_dir.resolve()
    files: list[Path] = []
    for current, folders, names in os.walk(raw_dir, followlinks=True):
        here = Path(current)
        for name in list(folders):
            folder = here / name
            if not folder.is_symlink():
                continue
            target = folder.resolve()
            shown = folder.relative_to(raw_dir).as_posix()
            if not target.is_relative_to(root):
                raise DatasetLayoutError(
                    f"{raw_dir}/{shown} is a symbolic link to {target}, outside the registered dataset folder "
                    f"{raw_dir}. Fix: copy those files into the dataset folder, or register the folder that holds "
                    f"everything as datasets.<name>.path")
            if here.resolve().is_relative_to(target):
                raise DatasetLayoutError(f"{raw_dir}/{shown} is a symbolic link to {target}, a folder that contains "
                                         f"it: a link loop. Fix: remove the link")
        files.extend(here / name for name in names)
    return sorted(files)


def index_images(raw_dir: Path, quarantine: Quarantine, metadata: tuple[Path, ...] = ()) -> dict[str, list[Path]]:
    """Map file stem -> image files under ``raw_dir`` (see :func:`dataset_files` for links).

    Linked files that resolve outside the dataset root and files that are neither images nor the
    dataset's ``metadata`` files are quarantined (hidden files such as ``.DS_Store`` are ignored).
    """
    root = raw_dir.resolve()
    expected = {m.resolve() for m in metadata}
    by_stem: dict[str, list[Path]] = {}
    for path in dataset_files(raw_dir):
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
    """Adapter records as a frame with every record column; metadata stays raw text (see ``fields``)."""
    frame = pd.DataFrame(records, columns=RECORD_COLUMNS)
    for column in ("lesion_id", "patient_id", "source_split", "license", "attribution", "sex", "site"):
        frame[column] = frame[column].fillna("").astype(str)
    return frame


def find_one(raw_dir: Path, name: str) -> Path:
    matches = sorted(p for p in dataset_files(raw_dir) if p.is_file() and p.name.lower() == name.lower())
    if not matches:
        raise DatasetLayoutError(f"{raw_dir}: no {name} found. Fix: check that this is the dataset's folder and that "
                                 f"its kind in params.yaml is right")
    if len(matches) > 1:
        listed = ", ".join(str(p) for p in matches)
        raise DatasetLayoutError(f"{raw_dir}: several {name} files ({listed}). Fix: keep exactly one")
    return matches[0]


def match_listed_images(raw_dir: Path, listed_ids: list[str], images: dict[str, list[Path]], quarantine: Quarantine,
                        metadata_name: str) -> dict[str, str]:
    """Pair the ids a metadata table lists with image files: ``{id: path relative to raw_dir}``.

    An id listed more than once (which row is right is unknown: every listing is quarantined, and
    its file with it), listed without a file, or with several files, and a file no row lists, are
    quarantined with the reason.
    """
    found: dict[str, str] = {}
    seen: set[str] = set()
    listings = Counter(listed_ids)
    for image_id in listed_ids:
        if listings[image_id] > 1:
            files = ", ".join(p.relative_to(raw_dir).as_posix() for p in images.get(image_id, []))
            quarantine.add(image_id, files, f"image id listed {listings[image_id]} times in {metadata_name}: "
                                            f"which row describes it is unknown")
            seen.add(image_id)
            continue
        seen.add(image_id)
        files = images.get(image_id, [])
        if not files:
            quarantine.add(image_id, "", f"image listed in {metadata_name} but no file found")
        elif len(files) > 1:
            quarantine.add(image_id, ", ".join(p.relative_to(raw_dir).as_posix() for p in files),
                           "several files for one image id")
        else:
            found[image_id] = files[0].relative_to(raw_dir).as_posix()
    for stem, files in images.items():
        if stem not in seen:
            for path in files:
                quarantine.add(stem, path.relative_to(raw_dir).as_posix(), f"image file not listed in {metadata_name}")
    return found


def missing_files_note(listed: int, missing: list[str], metadata_name: str, hint: str = "") -> list[str]:
    """A note for a partial download: when at least a tenth of the listed images have no file, say how many
    and which (first and last id), with the source-specific ``hint`` on what is likely absent."""
    if not listed or len(missing) < max(1, 0.1 * listed):
        return []
    ids = sorted(missing)
    return [f"{len(missing):,} of the {listed:,} images listed in {metadata_name} have no file "
            f"({ids[0]} … {ids[-1]}): the download looks partial.{' ' + hint if hint else ''}"]


def apply_label_policy(values: dict[str, str], policy, default_field: str) -> tuple[str | None, str | None]:
    """The class of one image from its raw metadata ``values`` (column -> text) under ``policy``
    (a :class:`mobiledx.data.manifest.LabelPolicy`): ``(class, None)``, or ``(None, reason)`` to refuse it."""
    column = policy.column or default_field
    for key, target in policy.map.items():  # "<column>=<value>" keys first, in the order given
        if "=" in key:
            other, wanted = key.split("=", 1)
            if values.get(other.strip(), "").strip() == wanted.strip():
                return target, None
    raw = values.get(column, "").strip()
    if not raw:
        if policy.missing != "quarantine":
            return policy.missing, None
        return None, f"no {column} value (datasets.<name>.labels.missing: quarantine)"
    if not policy.map:
        return raw, None
    if raw in policy.map:
        return policy.map[raw], None
    if policy.unmapped != "quarantine":
        return policy.unmapped, None
    return None, f"{column} {raw!r} is not in datasets.<name>.labels.map"


def policy_classes(policy, native: list[str]) -> list[str]:
    """The classes a dataset ends up with: the source's own (``native``), or the targets of
    ``labels.map``; plus the classes that unmapped or missing values are sent to, if any."""
    classes = list(dict.fromkeys(policy.map.values())) if policy.map else list(native)
    for fallback in (policy.unmapped, policy.missing):
        if fallback != "quarantine" and fallback not in classes:
            classes.append(fallback)
    return sorted(classes) if policy.map else classes


def listed_without_file(listed_ids: list[str], images: dict[str, list[Path]]) -> list[str]:
    """The listed ids with no image file at all (for :func:`missing_files_note`)."""
    return [image_id for image_id in dict.fromkeys(listed_ids) if not images.get(image_id)]

"""The adapter registry and the helpers every adapter shares."""

from __future__ import annotations

import os
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


def register(kind: str, *, label_policy: bool = False, arrays: bool = False) -> Callable[[Adapter], Adapter]:
    """Decorator registering an adapter function under ``kind`` (the value used in params.yaml);
    ``label_policy``: it applies ``datasets.<name>.labels`` (the others take their classes from the layout);
    ``arrays``: it returns the pixels themselves (``ScanResult.pixels``), so it runs in the ingesting process."""

    def decorate(function: Adapter) -> Adapter:
        function.label_policy = label_policy
        function.arrays = arrays
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


def dataset_files(raw_dir: Path) -> list[str]:
    """Every file below ``raw_dir``, as a path relative to it (``/``-separated), following symbolic links
    that stay inside it; sorted as paths (folder by folder).

    Big datasets often live on another disk and are linked in. Linking the whole dataset folder
    works (the registered path is resolved first); a link to a folder OUTSIDE the registered folder,
    or a link loop, is a :class:`DatasetLayoutError` that names the link and the fix. Plain strings,
    not ``Path`` objects: a few dozen bytes per file, for datasets of hundreds of thousands of files.
    """
    raw_dir = Path(raw_dir)
    root = raw_dir.resolve()
    files: list[str] = []
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
        prefix = here.relative_to(raw_dir).as_posix()
        files.extend(name if prefix == "." else f"{prefix}/{name}" for name in names)
    return sorted(files, key=lambda relative: relative.replace("/", "\0"))  # "\0" sorts first: folder by folder


def index_images(raw_dir: Path, quarantine: Quarantine, metadata: tuple[Path, ...] = ()) -> pd.DataFrame:
    """The image files under ``raw_dir`` (see :func:`dataset_files` for links): a frame of ``stem``
    (file name without extension) and ``path`` (relative to ``raw_dir``), sorted by path.

    Linked files that resolve outside the dataset root and files that are neither images nor the
    dataset's ``metadata`` files are quarantined (hidden files such as ``.DS_Store`` are ignored).
    """
    root = raw_dir.resolve()
    expected = {m.resolve() for m in metadata}
    stems, paths = [], []
    for relative in dataset_files(raw_dir):
        full = os.path.join(raw_dir, relative)
        name = relative.rsplit("/", 1)[-1]
        if not os.path.isfile(full) or name.startswith("."):
            continue
        stem, suffix = os.path.splitext(name)
        if os.path.islink(full) and not Path(full).resolve().is_relative_to(root):
            quarantine.add(stem, relative, "path resolves outside the dataset root")
        elif suffix.lower() in IMAGE_SUFFIXES:
            stems.append(stem)
            paths.append(relative)
        elif Path(full).resolve() not in expected:
            quarantine.add(stem, relative, f"not an image file ({suffix or 'no extension'})")
    return pd.DataFrame({"stem": pd.Series(stems, dtype="str"), "path": pd.Series(paths, dtype="str")})


def records_frame(records: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """Adapter records (dicts, or a frame of some record columns) as a frame with every record column;
    metadata stays raw text (see ``fields``)."""
    frame = pd.DataFrame(records, columns=RECORD_COLUMNS)
    for column in ("lesion_id", "patient_id", "source_split", "license", "attribution", "sex", "site"):
        frame[column] = frame[column].fillna("").astype(str)
    return frame


def find_one(raw_dir: Path, name: str) -> Path:
    matches = [raw_dir / relative for relative in dataset_files(raw_dir)
               if relative.rsplit("/", 1)[-1].lower() == name.lower()]
    matches = sorted(path for path in matches if path.is_file())
    if not matches:
        raise DatasetLayoutError(f"{raw_dir}: no {name} found. Fix: check that this is the dataset's folder and that "
                                 f"its kind in params.yaml is right")
    if len(matches) > 1:
        listed = ", ".join(str(p) for p in matches)
        raise DatasetLayoutError(f"{raw_dir}: several {name} files ({listed}). Fix: keep exactly one")
    return matches[0]


def match_listed_images(listed_ids: pd.Series, images: pd.DataFrame, quarantine: Quarantine,
                        metadata_name: str) -> pd.Series:
    """Pair the ids a metadata table lists with image files (:func:`index_images`): a Series of paths
    (relative to the dataset root) indexed by id.

    An id listed more than once (which row is right is unknown: every listing is quarantined, and
    its file with it), listed without a file, or with several files, and a file no row lists, are
    quarantined with the reason. Column-wise: memory stays a few dozen bytes per image.
    """
    listed_ids = pd.Series(listed_ids, dtype="str").reset_index(drop=True)
    listings = listed_ids.map(listed_ids.value_counts())
    file_count = listed_ids.map(images["stem"].value_counts()).fillna(0).astype(int)
    problems = (listings > 1) | (file_count != 1)
    if problems.any():
        joined = images[images["stem"].isin(listed_ids[problems])].groupby("stem")["path"].agg(", ".join)
        for image_id, times, count in zip(listed_ids[problems], listings[problems], file_count[problems], strict=True):
            if times > 1:
                reason = f"image id listed {times} times in {metadata_name}: which row describes it is unknown"
                quarantine.add(image_id, joined.get(image_id, ""), reason)
            elif count == 0:
                quarantine.add(image_id, "", f"image listed in {metadata_name} but no file found")
            else:
                quarantine.add(image_id, joined[image_id], "several files for one image id")
    unlisted = images[~images["stem"].isin(listed_ids)]
    for stem, path in zip(unlisted["stem"], unlisted["path"], strict=True):
        quarantine.add(stem, path, f"image file not listed in {metadata_name}")
    matched = listed_ids[~problems].to_numpy()
    single = images[images["stem"].isin(matched)]
    return pd.Series(single["path"].to_numpy(), index=pd.Index(single["stem"].to_numpy(), name="image_id"),
                     dtype="str").reindex(matched)


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


def policy_columns(policy, default_field: str) -> list[str]:
    """The metadata columns :func:`apply_label_policy` reads under ``policy``."""
    others = [key.split("=", 1)[0].strip() for key in policy.map if "=" in key]
    return list(dict.fromkeys([policy.column or default_field, *others]))


def policy_classes(policy, native: list[str]) -> list[str]:
    """The classes a dataset ends up with: the source's own (``native``), or the targets of
    ``labels.map``; plus the classes that unmapped or missing values are sent to, if any."""
    classes = list(dict.fromkeys(policy.map.values())) if policy.map else list(native)
    for fallback in (policy.unmapped, policy.missing):
        if fallback != "quarantine" and fallback not in classes:
            classes.append(fallback)
    return sorted(classes) if policy.map else classes


def listed_without_file(listed_ids: pd.Series, images: pd.DataFrame) -> list[str]:
    """The listed ids with no image file at all (for :func:`missing_files_note`)."""
    listed_ids = pd.Series(listed_ids, dtype="str")
    return list(pd.unique(listed_ids[~listed_ids.isin(images["stem"])]))

"""Ingest: adapter scan → parallel hash and decode/resize → manifest + image cache (streamed to disk) + quarantine."""

from __future__ import annotations

import hashlib
import os
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from mobiledx.data.adapters import get_adapter
from mobiledx.data.adapters.registry import dataset_files, known_kinds
from mobiledx.data.fields import convert_fields
from mobiledx.data.images import UnreadableImageError, decode_frame, device_resize, resize_array
from mobiledx.data.manifest import MANIFEST_COLUMNS, QUARANTINE_COLUMNS, LabelPolicy, ScanOptions
from mobiledx.errors import MobiledxError
from mobiledx.io import NpyWriter


class IngestError(MobiledxError):
    """The raw data cannot be ingested as registered (missing folder, impossible grouping)."""


@dataclass
class IngestResult:
    manifest: pd.DataFrame  # MANIFEST_COLUMNS; row i <-> row i of the image cache
    images_path: Path  # the image cache written: (N, size, size, 3) uint8 .npy
    quarantine: pd.DataFrame  # QUARANTINE_COLUMNS
    classes: list[str]
    raw_hash: str  # SHA-256 over every file's relative path and content hash
    normalised: dict[str, int]  # metadata normalisations, counted ("sex: empty, kept as unknown": 57)
    notes: list[str]  # what the adapter noticed (e.g. a partial download)
    grouping: str  # how groups were formed (datasets.<name>.group_by)
    unfit_kept: dict[str, int]  # unfit images kept (ingest.unfit_images: keep), counted by problem

    @property
    def images(self):
        """The image cache, memory-mapped (see :class:`mobiledx.data.cache.MappedImages`)."""
        from mobiledx.data.cache import MappedImages

        return MappedImages(self.images_path)


def _hash_file(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _hash_array(array: np.ndarray) -> str:
    return hashlib.sha256(str(array.shape).encode() + np.ascontiguousarray(array).tobytes()).hexdigest()


def _decode_one(task: tuple[str, int]) -> tuple[np.ndarray | None, str | None, tuple[int, int]]:
    """Worker: decode one file; returns (pixels or None, error or None, original (width, height))."""
    path, size = task
    data = Path(path).read_bytes()
    if not data:
        return None, "empty file (0 bytes)", (0, 0)
    try:
        frame = decode_frame(data)
    except UnreadableImageError as error:
        return None, str(error), (0, 0)
    return device_resize(frame, size), None, (frame.shape[1], frame.shape[0])


def _resize_one(array: np.ndarray, size: int) -> tuple[np.ndarray | None, str | None, tuple[int, int]]:
    """Like :func:`_decode_one` for datasets shipped as arrays (MedMNIST)."""
    try:
        return resize_array(array, size), None, (array.shape[1], array.shape[0])
    except UnreadableImageError as error:
        return None, str(error), (0, 0)


CHUNK_SIZE = 8  # tasks per worker call: the same few images in flight whatever the dataset's size
IN_FLIGHT = 3  # chunks queued per worker


def _run_chunk(function, tasks: list) -> list:
    return [function(task) for task in tasks]


def _ordered_map(function, tasks: list, workers: int, description: str) -> Iterator:
    """``function`` over ``tasks`` in worker processes, results in order, with a progress bar.

    At most a few chunks per worker are in flight, so memory stays bounded by them (a plain
    ``pool.map`` would keep every finished result until it is consumed).
    """
    progress = tqdm(total=len(tasks), desc=description, unit="img", mininterval=2.0)
    if workers <= 1 or len(tasks) < 64:
        for task in tasks:
            yield function(task)
            progress.update()
        progress.close()
        return
    chunks = (tasks[i:i + CHUNK_SIZE] for i in range(0, len(tasks), CHUNK_SIZE))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending = deque(pool.submit(_run_chunk, function, chunk) for chunk in islice(chunks, workers * IN_FLIGHT))
        while pending:
            results = pending.popleft().result()
            following = next(chunks, None)
            if following is not None:
                pending.append(pool.submit(_run_chunk, function, following))
            yield from results
            progress.update(len(results))
    progress.close()


def _raw_hash(raw_dir: Path, content_hashes: dict[str, str]) -> str:
    """Hash of the whole raw folder: every file's relative path and SHA-256 (images reuse decode hashes)."""
    digest = hashlib.sha256()
    for path in (p for p in dataset_files(raw_dir) if p.is_file()):
        relative = path.relative_to(raw_dir).as_posix()
        file_hash = content_hashes.get(relative) or hashlib.sha256(path.read_bytes()).hexdigest()
        digest.update(f"{relative}\t{file_hash}\n".encode())
    return digest.hexdigest()


def _quarantine_duplicates(manifest: pd.DataFrame) -> tuple[pd.Series, list[dict]]:
    """Identical files: keep the first copy when labels agree, refuse every copy when they conflict."""
    refused = pd.Series(False, index=manifest.index)
    entries = []
    for _, copies in manifest[manifest.duplicated("sha256", keep=False)].groupby("sha256", sort=False):
        first = copies.iloc[0]
        conflicting = copies["label"].nunique() > 1
        for index, row in copies.iterrows():
            if conflicting:
                labels = sorted(copies["label"].unique())
                others = ", ".join(i for i in copies["image_id"] if i != row.image_id)
                reason = f"same content as {others} with conflicting labels {labels}"
            elif index != copies.index[0]:
                reason = f"duplicate content of {first.image_id} (same label)"
            else:
                continue
            refused[index] = True
            entries.append({"image_id": row.image_id, "path": row.path, "reason": reason})
    return refused, entries


def _drop_escaping_paths(raw_dir: Path, records: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """Records whose ``path`` is absolute or resolves outside ``raw_dir`` (``..``, links), as quarantine rows."""
    root = raw_dir.resolve()
    inside = np.array(
        [not Path(str(p)).is_absolute() and (raw_dir / str(p)).resolve().is_relative_to(root) for p in records["path"]],
        dtype=bool,
    )
    escaping = [
        {"image_id": row.image_id, "path": row.path, "reason": "path resolves outside the dataset root"}
        for row in records[~inside].itertuples(index=False)
    ]
    return records[inside].reset_index(drop=True), escaping


def assign_groups(records: pd.DataFrame, group_by: str) -> tuple[pd.Series, str]:
    """Each record's group (what a split keeps together) and a sentence saying how groups were formed.

    ``auto`` groups by patient when the source has patient ids, else by lesion, else each image alone;
    a record without the chosen id falls back to its lesion, then to itself (counted in the sentence).
    """
    has_patient, has_lesion = records["patient_id"] != "", records["lesion_id"] != ""
    if group_by == "auto":
        group_by = "patient" if has_patient.any() else "lesion" if has_lesion.any() else "image"
    if group_by == "patient" and not has_patient.any() or group_by == "lesion" and not has_lesion.any():
        raise IngestError(f"datasets.<name>.group_by is {group_by!r} but no image has a {group_by} id. "
                          f"Fix: group_by: auto (or lesion / image)")
    image = records["image_id"]
    lesion = ("lesion:" + records["lesion_id"]).where(has_lesion, "image:" + image)
    if group_by == "patient":
        groups = records["patient_id"].where(has_patient, lesion)
        fallback = int((~has_patient & has_lesion).sum()), int((~has_patient & ~has_lesion).sum())
    elif group_by == "lesion":
        groups = records["lesion_id"].where(has_lesion, "image:" + image)
        fallback = 0, int((~has_lesion).sum())
    else:
        groups, fallback = image.copy(), (0, 0)
    primary = {"patient": records["patient_id"], "lesion": records["lesion_id"]}.get(group_by, image)
    sentence = f"grouped by {group_by} ({primary[primary != ''].nunique():,} {group_by}s)"
    if group_by == "patient" and any(fallback):
        sentence += (f"; {fallback[0]:,} image(s) without a patient id grouped by their lesion, "
                     f"{fallback[1]:,} alone")
    elif fallback[1]:
        sentence += f"; {fallback[1]:,} image(s) without a lesion id, each alone"
    return groups, sentence


@dataclass(frozen=True)
class ImageFitness:
    """Which images are unfit for the model: ``min_side`` px, ``max_aspect`` ratio (ingest params)."""

    min_side: int = 16
    max_aspect: float = 4.0
    quarantine: bool = True  # else kept and counted (ingest.unfit_images: keep)

    def problem(self, width: int, height: int) -> str | None:
        if min(width, height) < self.min_side:
            return f"image too small: {width}x{height} px (a side below ingest.min_image_side={self.min_side})"
        if max(width, height) > self.max_aspect * min(width, height):
            return (f"image too elongated: {width}x{height} px (aspect ratio above "
                    f"ingest.max_aspect_ratio={self.max_aspect:g})")
        return None


def ingest(raw_dir: str | Path, kind: str, image_size: int, images_path: str | Path, workers: int | None = None,
           options: ScanOptions = ScanOptions(), group_by: str = "auto",
           fitness: ImageFitness = ImageFitness()) -> IngestResult:
    """Scan ``raw_dir`` with the ``kind`` adapter and decode every listed image to ``image_size`` px.

    The kept images are written to ``images_path`` (``.npy``, atomically) one by one as they are
    decoded, never all held in memory. Content hashes come first (cheap), so identical files are
    decoded once and only the copies that are kept are written. Metadata is converted exactly
    (:mod:`mobiledx.data.fields`), groups are formed by ``group_by`` (:func:`assign_groups`) and
    images unfit for the model are quarantined or counted (``fitness``).
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise IngestError(f"raw data folder {raw_dir} does not exist. Fix: copy the dataset there and version it "
                          f"(`dvc add {raw_dir}`), or set datasets.<name>.path to the folder that holds it")
    adapter = get_adapter(kind)
    if options.labels != LabelPolicy() and not adapter.label_policy:
        raise IngestError(f"datasets.<name>.labels is set, but the {kind} layout takes its classes from its folders "
                          f"or files and would ignore it. Fix: remove labels from the entry (label policies apply to "
                          f"{', '.join(k for k in known_kinds() if get_adapter(k).label_policy)})")
    scan = adapter(raw_dir, options)
    records, report = convert_fields(scan.records.reset_index(drop=True))
    scan.records = None  # converted: let the adapter's copy go before decoding
    quarantine_rows = list(scan.quarantine.to_dict("records"))
    quarantine_rows += [{"image_id": records.at[i, "image_id"], "path": records.at[i, "path"], "reason": reason}
                        for i, reason in sorted(report.refused.items())]
    records = records.drop(index=list(report.refused)).reset_index(drop=True)
    records["group_id"], grouping = assign_groups(records, group_by)
    if scan.pixels is None:  # whatever an adapter lists, nothing outside the dataset root is ever read
        records, escaping = _drop_escaping_paths(raw_dir, records)
        quarantine_rows += escaping
    workers = workers or os.cpu_count() or 1
    if scan.pixels is not None:
        arrays = [scan.pixels[i] for i in records["image_id"]]
        records["sha256"] = [_hash_array(array) for array in arrays]
    else:
        files = [str(raw_dir / p) for p in records["path"]]
        records["sha256"] = list(_ordered_map(_hash_file, files, workers, "hash"))

    # Identical content decodes identically (errors, sizes): decode the first copy of each, keep it unless
    # it is unreadable or unfit, or the copies' labels conflict (then every copy is refused).
    first = ~records["sha256"].duplicated(keep="first").to_numpy()
    conflicting = (records.groupby("sha256")["label"].transform("nunique") > 1).to_numpy()
    decode_rows = np.flatnonzero(first)
    if scan.pixels is not None:
        decoded = (_resize_one(arrays[i], image_size) for i in decode_rows)
    else:
        decoded = _ordered_map(_decode_one, [(files[i], image_size) for i in decode_rows], workers, "decode")
    errors: dict[str, str | None] = {}
    sizes: dict[str, tuple[int, int]] = {}
    unfit: dict[str, str] = {}
    images_path = Path(images_path)
    with NpyWriter(images_path, (image_size, image_size, 3), max_rows=int((first & ~conflicting).sum())) as cache:
        for row, (pixels, error, size) in zip(decode_rows, decoded, strict=True):
            digest = records.at[row, "sha256"]
            problem = fitness.problem(*size) if error is None else None
            if problem is not None:
                unfit[digest] = problem
                error = problem if fitness.quarantine else None
            errors[digest], sizes[digest] = error, size
            if error is None and not conflicting[row]:
                cache.append(pixels[None])
    record_errors = records["sha256"].map(errors)
    records["width"] = [sizes[d][0] for d in records["sha256"]]
    records["height"] = [sizes[d][1] for d in records["sha256"]]

    readable = record_errors.isna().to_numpy()
    for row, error in zip(records.itertuples(index=False), record_errors):
        if isinstance(error, str):
            reason = error if error in unfit.values() else f"unreadable: {error}"
            quarantine_rows.append({"image_id": row.image_id, "path": row.path, "reason": reason})
    duplicates, duplicate_entries = _quarantine_duplicates(records[readable])
    quarantine_rows.extend(duplicate_entries)
    keep = readable.copy()
    keep[duplicates[duplicates].index.to_numpy()] = False

    manifest = records[keep].reset_index(drop=True)[MANIFEST_COLUMNS]
    if len(manifest) != cache.rows:
        raise RuntimeError(f"ingest wrote {cache.rows} images for {len(manifest)} manifest rows")
    content_hashes = {row.path: row.sha256 for row in records.itertuples(index=False)}
    kept_unfit = [problem.split(":")[0] for digest, problem in unfit.items() if not fitness.quarantine]
    return IngestResult(
        manifest=manifest,
        images_path=images_path,
        quarantine=pd.DataFrame(quarantine_rows, columns=QUARANTINE_COLUMNS),
        classes=scan.classes,
        raw_hash=_raw_hash(raw_dir, content_hashes),
        normalised={**scan.normalised, **report.as_dict()},
        notes=list(scan.notes),
        grouping=grouping,
        unfit_kept=dict(Counter(kept_unfit)),
    )

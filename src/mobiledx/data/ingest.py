"""Ingest: adapter scan → parallel decode/hash/resize → manifest + cached image array + quarantine."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from mobiledx.data.adapters import get_adapter
from mobiledx.data.images import UnreadableImageError, decode_image, resize_array
from mobiledx.data.manifest import MANIFEST_COLUMNS, QUARANTINE_COLUMNS


@dataclass
class IngestResult:
    manifest: pd.DataFrame  # MANIFEST_COLUMNS; row i <-> images[i]
    images: np.ndarray  # (N, size, size, 3) uint8
    quarantine: pd.DataFrame  # QUARANTINE_COLUMNS
    classes: list[str]
    raw_hash: str  # SHA-256 over every file's relative path and content hash


def _decode_one(task: tuple[str, int]) -> tuple[str, np.ndarray | None, str | None]:
    """Worker: hash and decode one file; returns (sha256, pixels or None, error or None)."""
    path, size = task
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        return digest, None, "empty file (0 bytes)"
    try:
        return digest, decode_image(data, size), None
    except UnreadableImageError as error:
        return digest, None, str(error)


def _resize_arrays(arrays: list[np.ndarray], size: int) -> list[tuple[str, np.ndarray | None, str | None]]:
    """Like :func:`_decode_all` for datasets shipped as arrays (MedMNIST): hash and resize in-process."""
    results = []
    for array in tqdm(arrays, desc="resize", unit="img", mininterval=2.0):
        digest = hashlib.sha256(str(array.shape).encode() + np.ascontiguousarray(array).tobytes()).hexdigest()
        try:
            results.append((digest, resize_array(array, size), None))
        except UnreadableImageError as error:
            results.append((digest, None, str(error)))
    return results


def _decode_all(paths: list[Path], size: int, workers: int) -> list[tuple[str, np.ndarray | None, str | None]]:
    tasks = [(str(p), size) for p in paths]
    progress = dict(total=len(tasks), desc="decode", unit="img", mininterval=2.0)
    if workers <= 1 or len(tasks) < 64:
        return [_decode_one(t) for t in tqdm(tasks, **progress)]
    chunksize = max(8, len(tasks) // (workers * 16))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(_decode_one, tasks, chunksize=chunksize), **progress))


def _raw_hash(raw_dir: Path, content_hashes: dict[str, str]) -> str:
    """Hash of the whole raw folder: every file's relative path and SHA-256 (images reuse decode hashes)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in raw_dir.rglob("*") if p.is_file()):
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
                reason = f"same content as {', '.join(i for i in copies['image_id'] if i != row.image_id)} with conflicting labels {labels}"
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
    inside = np.array([not Path(str(p)).is_absolute() and (raw_dir / str(p)).resolve().is_relative_to(root)
                       for p in records["path"]], dtype=bool)
    escaping = [{"image_id": row.image_id, "path": row.path, "reason": "path resolves outside the dataset root"}
                for row in records[~inside].itertuples(index=False)]
    return records[inside].reset_index(drop=True), escaping


def ingest(raw_dir: str | Path, kind: str, image_size: int, workers: int | None = None) -> IngestResult:
    """Scan ``raw_dir`` with the ``kind`` adapter and decode every listed image to ``image_size`` px."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(
            f"raw data folder {raw_dir} does not exist: put the dataset there and run `dvc add {raw_dir}`"
        )
    scan = get_adapter(kind)(raw_dir)
    records = scan.records.reset_index(drop=True)
    escaping: list[dict] = []
    if scan.pixels is None:  # whatever an adapter lists, nothing outside the dataset root is ever read
        records, escaping = _drop_escaping_paths(raw_dir, records)
    workers = workers or os.cpu_count() or 1
    if scan.pixels is not None:
        decoded = _resize_arrays([scan.pixels[i] for i in records["image_id"]], image_size)
    else:
        decoded = _decode_all([raw_dir / p for p in records["path"]], image_size, workers)

    records["sha256"] = [digest for digest, _, _ in decoded]
    quarantine_rows = list(scan.quarantine.to_dict("records")) + escaping
    readable = np.array([error is None for _, _, error in decoded], dtype=bool)
    for row, (_, _, error) in zip(records.itertuples(index=False), decoded):
        if error is not None:
            quarantine_rows.append({"image_id": row.image_id, "path": row.path, "reason": f"unreadable: {error}"})
    duplicates, duplicate_entries = _quarantine_duplicates(records[readable])
    quarantine_rows.extend(duplicate_entries)
    keep = readable.copy()
    keep[duplicates[duplicates].index.to_numpy()] = False

    manifest = records[keep].reset_index(drop=True)[MANIFEST_COLUMNS]
    kept_pixels = [pixels for (_, pixels, _), kept in zip(decoded, keep) if kept]
    images = np.stack(kept_pixels) if kept_pixels else np.zeros((0, image_size, image_size, 3), np.uint8)
    content_hashes = {row.path: row.sha256 for row in records.itertuples(index=False)}
    return IngestResult(
        manifest=manifest,
        images=images,
        quarantine=pd.DataFrame(quarantine_rows, columns=QUARANTINE_COLUMNS),
        classes=scan.classes,
        raw_hash=_raw_hash(raw_dir, content_hashes),
    )

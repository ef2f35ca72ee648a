"""Ingest: adapter scan → parallel hash and decode/resize → manifest + image cache (streamed to disk) + quarantine."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from mobiledx.data.adapters import get_adapter
from mobiledx.data.adapters.registry import (
    Adapter,
    dataset_files,
    known_kinds,
    lookalike_names,
    lookalikes_described,
    refusal_summary,
)
from mobiledx.data.cache import MappedImages
from mobiledx.data.fields import convert_fields
from mobiledx.data.images import UnreadableImageError, array_mode, resize_array
from mobiledx.data.manifest import (
    LISTED_WITHOUT_FILE,
    MANIFEST_COLUMNS,
    QUARANTINE_COLUMNS,
    LabelPolicy,
    ScanOptions,
    ScanResult,
    empty_ignored,
)
from mobiledx.data.near_duplicates import DEFAULT_MAX_DISTANCE, image_hashes, resolve_near_duplicates
from mobiledx.data.workers import Decoded, Workers, decode_file, hash_file, map_large_blocks
from mobiledx.errors import MobiledxError
from mobiledx.io import NpyWriter


class IngestError(MobiledxError):
    """The raw data cannot be ingested as registered (missing folder, impossible grouping)."""


class NothingToIngestError(IngestError):
    """Every input was refused: the message gives the top reasons with counts and the fix. ``quarantine``
    and ``ignored`` hold the whole tables (QUARANTINE_COLUMNS, IGNORED_COLUMNS), for whoever wants to write them."""

    def __init__(self, message: str, quarantine: pd.DataFrame | None = None, ignored: pd.DataFrame | None = None):
        super().__init__(message)
        self.quarantine = quarantine
        self.ignored = ignored

    def __reduce__(self):  # crosses the scan process's pipe whole
        return type(self), (str(self), self.quarantine, self.ignored)


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
    ignored: pd.DataFrame = field(default_factory=empty_ignored)  # IGNORED_COLUMNS: companions, metadata
    converted_modes: dict[str, int] = field(default_factory=dict)  # kept images not stored as 8-bit RGB, by mode
    n_missing_files: int = 0  # images the metadata lists but no file holds (a partial download)
    near_duplicates: dict = field(default_factory=dict)  # NearDuplicates.summary(): policy, counts, pairs

    @property
    def images(self):
        """The image cache, memory-mapped (see :class:`mobiledx.data.cache.MappedImages`)."""
        return MappedImages(self.images_path)


def _hash_array(array: np.ndarray) -> bytes:
    return hashlib.sha256(str(array.shape).encode() + np.ascontiguousarray(array).tobytes()).digest()


def _resize_one(array: np.ndarray, size: int) -> Decoded:
    """Like :func:`decode_file` for datasets shipped as arrays (MedMNIST)."""
    try:
        return resize_array(array, size), None, (array.shape[1], array.shape[0]), array_mode(array)
    except UnreadableImageError as error:
        return None, str(error), (0, 0), ""


@dataclass
class _Scan:
    """What ingest knows before reading any image: the adapter's findings and the records to read
    (their :data:`DECODE_COLUMNS`; the whole table waits in a file until the images are decoded)."""

    found: ScanResult  # the adapter's (its records converted into ``records``)
    records: pd.DataFrame  # converted metadata, grouped, every path inside the dataset root
    quarantine_rows: list[dict]
    normalised: dict[str, int]  # the adapter's and the field conversion's normalisations, counted
    grouping: str


DECODE_COLUMNS = ["image_id", "path", "label"]  # what ingest reads while decoding


def _scan(adapter: Adapter, raw_dir: Path, options: ScanOptions, group_by: str, whole_table: Path) -> _Scan:
    """List the dataset with its adapter, convert its metadata (:mod:`mobiledx.data.fields`), refuse the
    images of a lesion labelled two ways, group it; the whole records table is written to ``whole_table``
    (Arrow IPC), for after decoding. Nothing left: :class:`NothingToIngestError`, saying why."""
    found = adapter(raw_dir, options)
    _refuse_lookalike_classes(raw_dir, found)
    records, report = convert_fields(found.records.reset_index(drop=True))
    found.records = None
    refused = {**_lesion_label_conflicts(records), **report.refused}  # a field's own fault is named first
    quarantine_rows = list(found.quarantine.to_dict("records"))
    quarantine_rows += [{"image_id": records.at[i, "image_id"], "path": records.at[i, "path"], "reason": reason}
                        for i, reason in sorted(refused.items())]
    records = records.drop(index=list(refused)).reset_index(drop=True)
    if found.pixels is None:  # whatever an adapter lists, nothing outside the dataset root is ever read
        records, escaping = _drop_escaping_paths(raw_dir, records)
        quarantine_rows += escaping
    if records.empty:
        _nothing_left(raw_dir, quarantine_rows, found)
    records["group_id"], grouping = assign_groups(records, group_by)
    records.to_feather(whole_table)
    return _Scan(found, records[DECODE_COLUMNS], quarantine_rows, {**found.normalised, **report.as_dict()}, grouping)


def _nothing_left(raw_dir: Path, quarantine_rows: list[dict], found: ScanResult) -> None:
    """Raise :class:`NothingToIngestError`: every input of ``raw_dir`` was refused."""
    quarantine = pd.DataFrame(quarantine_rows, columns=QUARANTINE_COLUMNS)
    raise NothingToIngestError(refusal_summary(quarantine, str(raw_dir), found.notes), quarantine, found.ignored)


def _refuse_lookalike_classes(raw_dir: Path, found: ScanResult) -> None:
    """Two classes whose names a reader cannot tell apart (``Benign`` and ``benign``, a zero-width space, a
    full-width letter): an :class:`IngestError` naming both, never two classes."""
    counts = found.records["label"].astype(str).value_counts()
    clashes = lookalike_names([*map(str, found.classes), *counts.index])
    if clashes:
        described = lookalikes_described(clashes, lambda name: f"{int(counts.get(name, 0)):,} image(s)")
        raise IngestError(f"{raw_dir}: labels that differ only in letter case, width, invisible characters or "
                          f"lookalike letters of another script: {described}. One class or two? Fix: send them to "
                          f"one class with datasets.<name>.labels.map (or correct the metadata)")


def _lesion_label_conflicts(records: pd.DataFrame, shown: int = 3) -> dict[int, str]:
    """The rows of lesions whose images carry different labels, with a reason naming each label and its images:
    a lesion has one diagnosis, so which one is right is unknown (every image of it is refused)."""
    has_lesion = records["lesion_id"] != ""
    if not has_lesion.any():
        return {}
    per_lesion = records[has_lesion].groupby("lesion_id")["label"].nunique()
    torn = per_lesion[per_lesion > 1].index
    refused = {}
    for lesion, rows in records[has_lesion & records["lesion_id"].isin(torn)].groupby("lesion_id", sort=True):
        described = " and ".join(
            f"{label!r} ({', '.join(ids[:shown])}{' …' if len(ids) > shown else ''})"
            for label, ids in ((label, list(group)) for label, group in rows.groupby("label")["image_id"]))
        for index in rows.index:
            refused[index] = f"lesion {lesion} is labelled {described} across its images: which is right is unknown"
    return refused


def _scan_apart(adapter: Adapter, raw_dir: Path, options: ScanOptions, group_by: str, whole_table: Path) -> _Scan:
    """:func:`_scan`, run in a forked process of its own.

    Adapters and the field conversion are plain per-row Python (easy to write and read); scanning
    hundreds of thousands of files makes millions of short-lived objects, and memory they free is
    not given back to the system, so the ingesting process would keep that peak for the rest of the
    run. In its own process the scan's peak ends with it; only the compact records come back.
    Adapters that return the pixels themselves (``arrays``), and platforms without ``fork``, scan
    in this process.
    """
    if getattr(adapter, "arrays", False) or "fork" not in multiprocessing.get_all_start_methods():
        return _scan(adapter, raw_dir, options, group_by, whole_table)
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    process = context.Process(target=_send_scan, args=(sending, adapter, raw_dir, options, group_by, whole_table),
                              name="scan")
    process.start()
    sending.close()
    try:
        outcome = receiving.recv()
    except EOFError:
        raise IngestError(f"scanning {raw_dir} stopped (the scan process exited with {process.exitcode}), "
                          f"often for lack of memory. Fix: free memory and run the stage again") from None
    finally:
        process.join()
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _send_scan(sending, *arguments) -> None:
    try:
        outcome = _scan(*arguments)
    except Exception as error:  # raised again in the ingesting process, with where it came from
        error.add_note("".join(traceback.format_exception(error)).rstrip())
        outcome = error
    sending.send(outcome)


def _content_codes(digests: Iterable[bytes], count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``count`` SHA-256 digests as a ``(count, 32)`` uint8 array, each one's content code (equal
    codes: identical content) and the row of each code's first copy, ascending. Fixed-width arrays:
    a few dozen bytes per image, not Python objects."""
    table = np.empty((count, 32), np.uint8)
    for row, digest in enumerate(digests):
        table[row] = np.frombuffer(digest, np.uint8)
    _, first_rows, codes = np.unique(table.view("V32").ravel(), return_index=True, return_inverse=True)
    return table, codes.reshape(-1), np.sort(first_rows)


def _conflicting(codes: np.ndarray, labels: pd.Series) -> np.ndarray:
    """Per row: whether copies of its content (equal ``codes``) carry different labels."""
    label_codes, _ = pd.factorize(labels)
    pairs = np.unique(np.stack([codes, label_codes]), axis=1)
    return (np.bincount(pairs[0], minlength=codes.max(initial=-1) + 1) > 1)[codes]


def _raw_hash(raw_dir: Path, paths: pd.Series, hashes: pd.Series) -> str:
    """Hash of the whole raw folder: every file's relative path and SHA-256 (images reuse ``hashes``,
    the content hashes of the files at ``paths``)."""
    files = pd.Series(dataset_files(raw_dir), dtype="str")
    files = files[[os.path.isfile(raw_dir / relative) for relative in files]]
    known = pd.Series(hashes.to_numpy(), index=paths.to_numpy())
    known = known[~known.index.duplicated(keep="last")].reindex(files.to_numpy())
    digest = hashlib.sha256()
    for relative, file_hash in zip(files, known, strict=True):
        if not isinstance(file_hash, str):  # not an image: hashed here
            file_hash = hashlib.sha256((raw_dir / relative).read_bytes()).hexdigest()
        digest.update(f"{relative}\t{file_hash}\n".encode())
    return digest.hexdigest()


def _quarantine_duplicates(records: pd.DataFrame, codes: np.ndarray,
                           readable: np.ndarray) -> tuple[list[int], list[dict]]:
    """Identical readable files (equal content ``codes``): keep the first copy when labels agree, refuse every
    copy when they conflict. Returns the refused rows and their quarantine entries."""
    candidates = np.flatnonzero(readable)
    copies_of = np.bincount(codes[candidates], minlength=codes.max(initial=-1) + 1)
    repeated = candidates[copies_of[codes[candidates]] > 1]
    refused, entries = [], []
    copies_frame = records.loc[repeated, ["image_id", "path", "label"]]
    for _, copies in copies_frame.groupby(codes[repeated], sort=False):
        labels = sorted(copies["label"].unique())
        for position, (index, row) in enumerate(copies.iterrows()):
            if len(labels) > 1:
                others = ", ".join(i for i in copies["image_id"] if i != row.image_id)
                reason = f"same content as {others} with conflicting labels {labels}"
            elif position:
                reason = f"duplicate content of {copies['image_id'].iloc[0]} (same label)"
            else:
                continue
            refused.append(index)
            entries.append({"image_id": row.image_id, "path": row.path, "reason": reason})
    return refused, entries


def _hex_digests(table: np.ndarray) -> pd.Series:
    """``(n, 32)`` uint8 digests as a text column of lowercase hex, built in Arrow buffers (no object per row)."""
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    text = np.ascontiguousarray(np.stack([digits[table >> 4], digits[table & 15]], axis=-1).reshape(len(table), 64))
    offsets = np.arange(0, 64 * (len(table) + 1), 64, dtype=np.int32)
    column = pa.StringArray.from_buffers(len(table), pa.py_buffer(offsets), pa.py_buffer(text))
    return pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([column], pa.string()), dtype=pd.StringDtype(
        "pyarrow", na_value=np.nan)))


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
    records = records.astype({"image_id": str, "lesion_id": str, "patient_id": str})  # empty frames included
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
           fitness: ImageFitness = ImageFitness(), near_duplicates: str = "group",
           near_duplicate_distance: int = DEFAULT_MAX_DISTANCE) -> IngestResult:
    """Scan ``raw_dir`` with the ``kind`` adapter and decode every listed image to ``image_size`` px.

    The kept images are written to ``images_path`` (``.npy``, atomically) one by one as they are
    decoded, never all held in memory. Content hashes come first (cheap), so identical files are
    decoded once and only the copies that are kept are written. Metadata is converted exactly
    (:mod:`mobiledx.data.fields`), groups are formed by ``group_by`` (:func:`assign_groups`),
    images unfit for the model are quarantined or counted (``fitness``), and near-duplicate images in
    different groups (:mod:`mobiledx.data.near_duplicates`, hashed from the cache batch by batch) are put
    in one group, quarantined or reported (``near_duplicates``: group | quarantine | report).
    """
    raw_dir, images_path = Path(raw_dir), Path(images_path)
    adapter = _adapter_for(raw_dir, kind, options)
    images_path.parent.mkdir(parents=True, exist_ok=True)
    # The whole records table waits on disk while images are decoded: this process holds only what decoding reads.
    handle, whole_table = tempfile.mkstemp(prefix=".records-", suffix=".arrow", dir=images_path.parent)
    os.close(handle)
    try:
        with Workers(workers or os.cpu_count() or 1) as pool:  # started first: see Workers
            map_large_blocks()  # here only: the workers, already started, decode faster with glibc's default
            scan = _scan_apart(adapter, raw_dir, options, group_by, whole_table)
            records, quarantine_rows = scan.records, scan.quarantine_rows
            digests, codes, decode_rows = _content_codes(_digests(scan, records, raw_dir, pool), len(records))
            # Identical content decodes identically (errors, sizes): decode the first copy of each, keep it unless
            # it is unreadable or unfit, or the copies' labels conflict (then every copy is refused).
            conflicting = _conflicting(codes, records["label"])
            decoded = _decode(scan, records, raw_dir, pool, decode_rows, image_size)
            written = _write_cache(decoded, decode_rows, codes, conflicting, fitness, images_path, image_size)
        records = pd.read_feather(whole_table)
    finally:
        os.unlink(whole_table)
    records["width"], records["height"] = written.sizes[codes, 0], written.sizes[codes, 1]
    records["sha256"] = _hex_digests(digests)
    del digests

    refused_rows = np.flatnonzero(np.isin(codes, np.fromiter(written.refusals, np.int64, len(written.refusals))))
    quarantine_rows += [{"image_id": records.at[row, "image_id"], "path": records.at[row, "path"],
                         "reason": written.refusals[codes[row]]} for row in refused_rows]
    readable = np.ones(len(records), bool)
    readable[refused_rows] = False
    duplicates, duplicate_entries = _quarantine_duplicates(records, codes, readable)
    quarantine_rows.extend(duplicate_entries)
    keep = readable.copy()
    keep[duplicates] = False

    manifest = records[keep].reset_index(drop=True)[MANIFEST_COLUMNS]
    if manifest.empty:  # every image refused while decoding: no empty cache is left behind
        images_path.unlink(missing_ok=True)
        _nothing_left(raw_dir, quarantine_rows, scan.found)
    if len(manifest) != written.rows:
        raise RuntimeError(f"ingest wrote {written.rows} images for {len(manifest)} manifest rows")
    manifest, near = _near_duplicates(manifest, images_path, near_duplicates, near_duplicate_distance,
                                      quarantine_rows)
    kept_unfit = [problem.split(":")[0] for problem in written.unfit.values() if not fitness.quarantine]
    return IngestResult(
        manifest=manifest,
        images_path=images_path,
        quarantine=pd.DataFrame(quarantine_rows, columns=QUARANTINE_COLUMNS),
        classes=scan.found.classes,
        raw_hash=_raw_hash(raw_dir, records["path"], records["sha256"]),
        normalised=scan.normalised,
        notes=list(scan.found.notes),
        grouping=scan.grouping,
        unfit_kept=dict(Counter(kept_unfit)),
        ignored=scan.found.ignored,
        converted_modes=dict(sorted(written.converted_modes.items())),
        n_missing_files=sum(bool(LISTED_WITHOUT_FILE.search(str(row["reason"]))) for row in quarantine_rows),
        near_duplicates=near.summary(),
    )


def _adapter_for(raw_dir: Path, kind: str, options: ScanOptions):
    """The ``kind`` adapter, once the folder exists and the options suit it (else :class:`IngestError`)."""
    if not raw_dir.is_dir():
        raise IngestError(f"raw data folder {raw_dir} does not exist. Fix: copy the dataset there and version it "
                          f"(`dvc add {raw_dir}`), or set datasets.<name>.path to the folder that holds it")
    adapter = get_adapter(kind)
    if options.labels != LabelPolicy() and not adapter.label_policy:
        raise IngestError(f"datasets.<name>.labels is set, but the {kind} layout takes its classes from its folders "
                          f"or files and would ignore it. Fix: remove labels from the entry (label policies apply to "
                          f"{', '.join(k for k in known_kinds() if get_adapter(k).label_policy)})")
    return adapter


def _digests(scan: _Scan, records: pd.DataFrame, raw_dir: Path, pool: Workers) -> Iterator[bytes]:
    """Each listed image's content hash, in records order (arrays hashed here, files by the workers)."""
    if scan.found.pixels is not None:
        return (_hash_array(scan.found.pixels[i]) for i in records["image_id"])
    return pool.map(hash_file, (str(raw_dir / path) for path in records["path"]), len(records), "hash")


def _decode(scan: _Scan, records: pd.DataFrame, raw_dir: Path, pool: Workers, decode_rows: np.ndarray,
            image_size: int) -> Iterator[tuple]:
    """``(pixels, error, (width, height), mode)`` of each of ``decode_rows``, in order."""
    if scan.found.pixels is not None:
        chosen = records["image_id"].take(decode_rows)
        return (_resize_one(scan.found.pixels[image_id], image_size) for image_id in chosen)
    tasks = ((str(raw_dir / path), image_size) for path in records["path"].take(decode_rows))
    return pool.map(decode_file, tasks, len(decode_rows), "decode")


@dataclass
class _Written:
    """What writing the cache found, by content code: original sizes, refusals (unreadable, unfit), unfit images."""

    sizes: np.ndarray  # (codes, 2) original (width, height)
    refusals: dict[int, str]
    unfit: dict[int, str]
    converted_modes: Counter[str]  # images kept that were not 8-bit RGB, by source mode
    rows: int


def _write_cache(decoded: Iterator[tuple], decode_rows: np.ndarray, codes: np.ndarray, conflicting: np.ndarray,
                 fitness: ImageFitness, images_path: Path, image_size: int) -> _Written:
    """Append each decoded image that is readable, fit and without a label conflict to the cache, in order."""
    written = _Written(np.zeros((len(decode_rows), 2), np.int32), {}, {}, Counter(), 0)
    with NpyWriter(images_path, (image_size, image_size, 3),
                   max_rows=int((~conflicting[decode_rows]).sum())) as cache:
        for row, (pixels, error, size, mode) in zip(decode_rows, decoded, strict=True):
            code = codes[row]
            written.sizes[code] = size
            problem = fitness.problem(*size) if error is None else None
            if problem is not None:
                written.unfit[code] = problem
                error = problem if fitness.quarantine else None
            elif error is not None:
                error = f"unreadable: {error}"
            if error is not None:
                written.refusals[code] = error
            elif not conflicting[row]:
                cache.append(pixels[None])
                if mode != "RGB":
                    written.converted_modes[mode] += 1
    written.rows = cache.rows
    return written


def _near_duplicates(manifest: pd.DataFrame, images_path: Path, policy: str, distance: int,
                     quarantine_rows: list[dict]):
    """Group, quarantine (appended to ``quarantine_rows``, their cache rows dropped) or report near-duplicates
    across groups; returns the manifest and what was found."""
    started = time.perf_counter()
    # Read through MappedImages: the pages it maps are handed back as it goes, so hashing 30,000 cached images
    # (4.2 GiB at 224 px) keeps this process's memory at a batch, not the file.
    near = resolve_near_duplicates(manifest, image_hashes(MappedImages(images_path)), policy, distance)
    print(f"near-duplicates: {len(manifest):,} images hashed and compared in {time.perf_counter() - started:.1f} s",
          flush=True)
    manifest["group_id"] = near.group_id
    if len(near.dropped):
        quarantine_rows += [{"image_id": manifest.at[row, "image_id"], "path": manifest.at[row, "path"],
                             "reason": reason} for row, reason in zip(near.dropped, near.reasons, strict=True)]
        kept = np.setdiff1d(np.arange(len(manifest)), near.dropped)
        _keep_cache_rows(images_path, kept)
        manifest = manifest.iloc[kept].reset_index(drop=True)
    return manifest, near


def _keep_cache_rows(images_path: Path, rows: np.ndarray, batch: int = 256) -> None:
    """Rewrite the image cache with only ``rows`` (sorted), batch by batch, atomically."""
    cached = MappedImages(images_path)
    with NpyWriter(images_path, cached.shape[1:], max_rows=len(rows)) as cache:
        for start in range(0, len(rows), batch):
            cache.append(cached[rows[start:start + batch]])
    del cached

"""ISIC Archive downloads (``isic image download OUTDIR``) and the ISIC 2019 and 2020 challenge training sets.

- ``isic_archive``: what the official ``isic-cli`` writes: ``<isic_id>.jpg`` (or ``.png``/``.tif``) files
  flat in the folder, ``metadata.csv`` (``isic_id, attribution, copyright_license``, then the fields the
  download holds, sorted: ``diagnosis_1..5``, ``lesion_id``, ``patient_id``, ``age_approx``, ``sex``,
  ``anatom_site_1..5`` ...), ``attribution.txt`` and ``licenses/``. The label is the column
  ``datasets.<name>.labels.column`` (default ``diagnosis_1``: Benign / Indeterminate / Malignant),
  mapped with ``labels.map``. Older downloads have ``anatom_site_general`` (removed 2026-04) and
  ``benign_malignant`` (removed 2025-06): both are still read.
- ``isic2019``: ``ISIC_2019_Training_Input/*.jpg``, the one-hot ``ISIC_2019_Training_GroundTruth.csv``
  (``image, MEL, NV, BCC, AK, BKL, DF, VASC, SCC, UNK``) and ``ISIC_2019_Training_Metadata.csv``
  (``image, age_approx, anatom_site_general, lesion_id, sex``); image ids may end in ``_downsampled``.
- ``isic2020``: ``train.csv`` / ``ISIC_2020_Training_GroundTruth[_v2].csv`` (``image_name, patient_id,
  [lesion_id,] sex, age_approx, anatom_site_general_challenge, diagnosis, benign_malignant, target``) with
  the images in ``train/`` or ``jpeg/train/``; ``ISIC_2020_Training_Duplicates.csv``, when present, lists
  pairs of the same image: the second of each pair is quarantined.

Every image keeps its lesion and patient ids (groups follow ``datasets.<name>.group_by``) and, for the
Archive, its licence and attribution, which the model card summarises.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from mobiledx.data.adapters.registry import (
    DatasetLayoutError,
    Quarantine,
    apply_label_policy,
    dataset_files,
    find_one,
    index_images,
    listed_without_file,
    match_listed_images,
    missing_files_note,
    policy_classes,
    records_frame,
    register,
)
from mobiledx.data.manifest import LabelPolicy, ScanOptions, ScanResult

ARCHIVE_METADATA = "metadata.csv"
ISIC2019_GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"
ISIC2019_METADATA = "ISIC_2019_Training_Metadata.csv"
ISIC2019_CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
ISIC2020_TABLES = ("train.csv", "ISIC_2020_Training_GroundTruth_v2.csv", "ISIC_2020_Training_GroundTruth.csv")
ISIC2020_DUPLICATES = "ISIC_2020_Training_Duplicates.csv"
ISIC2020_TARGETS = {"0": "benign", "1": "malignant"}


def _read_table(path: Path, required: list[str], what: str) -> pd.DataFrame:
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.columns = [column.strip() for column in table.columns]
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise DatasetLayoutError(f"{path}: missing column(s) {missing} of {what}; found {list(table.columns)}. "
                                 f"Fix: use the file as distributed, or check datasets.<name>.kind")
    return table


def _name(relative: str) -> str:
    return relative.rsplit("/", 1)[-1]


def _suffix(relative: str) -> str:
    return os.path.splitext(_name(relative))[1].lower()


def _first(row: dict, *columns: str) -> str:
    """The first non-empty value among ``columns`` (newer and older names of one field)."""
    return next((row[c] for c in columns if row.get(c, "").strip()), "")


def _labelled_records(table: pd.DataFrame, id_column: str, found: dict[str, str], policy: LabelPolicy,
                      default_field: str, quarantine: Quarantine, describe) -> list[dict]:
    """One record per listed image that has a file and a class under ``policy``; ``describe(row)`` gives
    the metadata fields of a row."""
    records = []
    for row in table.drop_duplicates(id_column, keep=False).to_dict("records"):
        image_id = row[id_column]
        if image_id not in found:
            continue
        label, reason = apply_label_policy(row, policy, default_field)
        if reason is not None:
            quarantine.add(image_id, found[image_id], reason)
            continue
        records.append({"image_id": image_id, "path": found[image_id], "label": label, **describe(row)})
    return records


@register("isic_archive", label_policy=True)
def scan_isic_archive(raw_dir: Path, options: ScanOptions = ScanOptions()) -> ScanResult:
    """An ``isic image download`` folder (see the module docstring); label: ``labels.column`` (``diagnosis_1``)."""
    raw_dir = Path(raw_dir)
    quarantine = Quarantine()
    metadata_path = find_one(raw_dir, ARCHIVE_METADATA)
    table = _read_table(metadata_path, ["isic_id"], "an isic-cli download")
    column = options.labels.column or "diagnosis_1"
    if column not in table.columns and not any("=" in key for key in options.labels.map):
        raise DatasetLayoutError(
            f"{metadata_path} has no column {column!r} (datasets.<name>.labels.column). Its columns: "
            f"{', '.join(table.columns)}. Fix: choose one of them, e.g. diagnosis_1 (benign/malignant) or diagnosis_3")
    table["isic_id"] = table["isic_id"].str.strip()
    extras = tuple(raw_dir / f for f in dataset_files(raw_dir) if _suffix(f) in (".txt", ".csv", ".md"))
    images = index_images(raw_dir, quarantine, metadata=extras)
    found = match_listed_images(table["isic_id"], images, quarantine, ARCHIVE_METADATA).to_dict()
    records = _labelled_records(table, "isic_id", found, options.labels, column, quarantine, lambda row: {
        "lesion_id": row.get("lesion_id", ""), "patient_id": row.get("patient_id", ""),
        "age": row.get("age_approx", ""), "sex": row.get("sex", ""),
        "site": _first(row, "anatom_site_1", "anatom_site_general"),
        "license": row.get("copyright_license", ""), "attribution": row.get("attribution", "")})
    native = sorted({record["label"] for record in records})
    missing = listed_without_file(table["isic_id"], images)
    return ScanResult(records=records_frame(records), quarantine=quarantine.frame(),
                      classes=policy_classes(options.labels, native),
                      notes=missing_files_note(len(set(table["isic_id"])), missing, ARCHIVE_METADATA,
                                               "Re-run `isic image download` into the same folder: it fetches only "
                                               "what is missing."))


@register("isic2019", label_policy=True)
def scan_isic2019(raw_dir: Path, options: ScanOptions = ScanOptions()) -> ScanResult:
    """The ISIC 2019 training set: one-hot ground truth (exactly one 1 per row, else quarantined) and metadata."""
    raw_dir = Path(raw_dir)
    quarantine = Quarantine()
    truth_path = find_one(raw_dir, ISIC2019_GROUND_TRUTH)
    truth = _read_table(truth_path, ["image", *ISIC2019_CLASSES[:-1]], "the ISIC 2019 ground truth")
    metadata_path = find_one(raw_dir, ISIC2019_METADATA)
    metadata = _read_table(metadata_path, ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"],
                           "the ISIC 2019 metadata")
    truth["image"] = truth["image"].str.strip()
    columns = [c for c in ISIC2019_CLASSES if c in truth.columns]
    diagnosis = []
    for row in truth.itertuples(index=False):
        values = {c: getattr(row, c).strip() for c in columns}
        try:
            ones = [c for c, v in values.items() if float(v) == 1.0]
            zeros = [c for c, v in values.items() if float(v) == 0.0]
        except ValueError:
            ones, zeros = [], []
        diagnosis.append(ones[0].lower() if len(ones) == 1 and len(ones) + len(zeros) == len(columns) else "")
    truth["diagnosis"] = diagnosis
    table = truth[["image", "diagnosis"]].merge(metadata.assign(image=metadata["image"].str.strip()), on="image",
                                                 how="left").fillna("")
    images = index_images(raw_dir, quarantine, metadata=(truth_path, metadata_path))
    found = match_listed_images(table["image"], images, quarantine, ISIC2019_GROUND_TRUTH).to_dict()
    policy = options.labels
    for row in table.itertuples(index=False) if not policy.column else ():  # say precisely what is wrong
        if row.image in found and not row.diagnosis and policy.missing == "quarantine":
            quarantine.add(row.image, found.pop(row.image), f"{ISIC2019_GROUND_TRUTH}: not exactly one class "
                                                           f"marked 1 (one-hot) for this image")
        elif row.image in found and row.diagnosis == "unk" and "unk" not in policy.map:
            quarantine.add(row.image, found.pop(row.image), f"{ISIC2019_GROUND_TRUTH} marks it UNK (no diagnosis)")
    records = _labelled_records(table, "image", found, policy, "diagnosis", quarantine, lambda row: {
        "lesion_id": row["lesion_id"], "patient_id": "", "age": row["age_approx"], "sex": row["sex"],
        "site": row["anatom_site_general"]})
    native = [c.lower() for c in columns if c != "UNK"]
    missing = listed_without_file(table["image"], images)
    return ScanResult(records=records_frame(records), quarantine=quarantine.frame(),
                      classes=policy_classes(policy, native),
                      notes=missing_files_note(len(set(table["image"])), missing, ISIC2019_GROUND_TRUTH,
                                               "Extract ISIC_2019_Training_Input.zip into this folder."))


@register("isic2020", label_policy=True)
def scan_isic2020(raw_dir: Path, options: ScanOptions = ScanOptions()) -> ScanResult:
    """The ISIC 2020 (SIIM-ISIC melanoma) training set: label ``target`` (benign/malignant) by default, or
    ``labels.column: diagnosis`` with a ``labels.map``; grouped by patient."""
    raw_dir = Path(raw_dir)
    quarantine = Quarantine()
    tables = [raw_dir / f for f in dataset_files(raw_dir) if _name(f) in ISIC2020_TABLES]
    if not tables:
        raise DatasetLayoutError(f"{raw_dir}: none of {', '.join(ISIC2020_TABLES)} found. Fix: put the training "
                                 f"table there, or check datasets.<name>.kind")
    table_path = sorted(tables, key=lambda p: ISIC2020_TABLES.index(p.name))[0]
    table = _read_table(table_path, ["image_name", "patient_id", "target"], "the ISIC 2020 training table")
    table["image_name"] = table["image_name"].str.strip()
    table["target_label"] = table["target"].str.strip().map(ISIC2020_TARGETS).fillna("")
    duplicates_path = next((raw_dir / f for f in dataset_files(raw_dir) if _name(f) == ISIC2020_DUPLICATES), None)
    others = tuple(raw_dir / f for f in dataset_files(raw_dir) if _suffix(f) == ".csv")
    images = index_images(raw_dir, quarantine, metadata=others)
    found = match_listed_images(table["image_name"], images, quarantine, table_path.name).to_dict()
    if duplicates_path is not None:
        pairs = _read_table(duplicates_path, ["image_name_1", "image_name_2"], "the duplicates list")
        for first, second in zip(pairs["image_name_1"].str.strip(), pairs["image_name_2"].str.strip()):
            if second in found:
                quarantine.add(second, found.pop(second), f"the same image as {first} ({ISIC2020_DUPLICATES})")
    policy = options.labels
    records = _labelled_records(table, "image_name", found, policy, "target_label", quarantine, lambda row: {
        "lesion_id": row.get("lesion_id", ""), "patient_id": row["patient_id"], "age": row.get("age_approx", ""),
        "sex": row.get("sex", ""), "site": row.get("anatom_site_general_challenge", "")})
    native = list(ISIC2020_TARGETS.values()) if not policy.column else sorted({r["label"] for r in records})
    missing = listed_without_file(table["image_name"], images)
    return ScanResult(records=records_frame(records), quarantine=quarantine.frame(),
                      classes=policy_classes(policy, native),
                      notes=missing_files_note(len(set(table["image_name"])), missing, table_path.name,
                                               "Extract the training JPEGs (ISIC_2020_Training_JPEG.zip) into this "
                                               "folder."))

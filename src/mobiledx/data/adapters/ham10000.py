"""HAM10000 (Tschandl et al. 2018): metadata CSV + ``ISIC_*.jpg`` images, grouped by lesion."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mobiledx.data.adapters.registry import (
    Quarantine,
    apply_label_policy,
    find_one,
    index_images,
    listed_without_file,
    match_listed_images,
    missing_files_note,
    policy_classes,
    policy_columns,
    read_table,
    register,
)
from mobiledx.data.formats import (
    HAM10000_CLASSES,
    HAM10000_COLUMNS,
    HAM10000_FIRST_IMAGE,
    HAM10000_IMAGES_PER_PART,
    HAM10000_METADATA_FILE,
    HAM10000_PART_FOLDER,
    HAM10000_REQUIRED_COLUMNS,
)
from mobiledx.data.manifest import ScanOptions, ScanResult


def _missing_part_hint(missing: list[str]) -> str:
    """Which of the release's two image archives the missing ids belong to, when nearly all fall in one."""
    numbers = [int(i.split("_")[-1]) for i in missing if i.split("_")[-1].isdigit()]
    for part in (1, 2):
        low = HAM10000_FIRST_IMAGE + (part - 1) * HAM10000_IMAGES_PER_PART
        inside = sum(low <= n < low + HAM10000_IMAGES_PER_PART + (15 if part == 2 else 0) for n in numbers)
        if numbers and inside >= 0.9 * len(numbers):
            folder = HAM10000_PART_FOLDER.format(part=part)
            return f"They are the ids of the release's archive {folder}: download and extract {folder}.zip there."
    return ""


@register("ham10000", label_policy=True)
def scan_ham10000(raw_dir: Path, options: ScanOptions = ScanOptions()) -> ScanResult:
    """HAM10000: ``HAM10000_metadata.csv`` plus ``ISIC_*.jpg`` anywhere below the root.

    Handles the distributed ``HAM10000_images_part_1/`` + ``_part_2/`` folders, a single folder,
    lowercase names and class sub-folders alike, since images are found by ``image_id``; the Kaggle
    mirror's second, identical copy of each folder is read once. Labels are ``dx`` (lower-cased,
    counted); ``datasets.<name>.labels.map`` can regroup them (e.g. benign/malignant).
    """
    raw_dir = Path(raw_dir)
    quarantine = Quarantine()
    metadata_path = find_one(raw_dir, HAM10000_METADATA_FILE)
    metadata, unreadable = read_table(metadata_path, HAM10000_REQUIRED_COLUMNS, "the HAM10000 metadata", quarantine,
                                      id_column="image_id", fix="use the HAM10000 metadata file as distributed",
                                      label_columns=policy_columns(options.labels, "dx"), known=HAM10000_COLUMNS)
    images = index_images(raw_dir, quarantine, metadata=(metadata_path,), collapse_copies=True)
    metadata["image_id"] = metadata["image_id"].str.strip()
    found = match_listed_images(metadata["image_id"], images, quarantine, HAM10000_METADATA_FILE, unreadable)
    missing_ids = listed_without_file(metadata["image_id"], images)
    normalised = {"label: lower-cased": int((metadata["dx"] != metadata["dx"].str.lower()).sum())}
    metadata["dx"] = metadata["dx"].str.strip().str.lower()
    classes = policy_classes(options.labels, HAM10000_CLASSES)
    listed = metadata[metadata["image_id"].isin(found.index)].reset_index(drop=True)
    columns = [c for c in policy_columns(options.labels, "dx") if c in listed.columns]
    labels, kept = [], []
    for image_id, *values in zip(listed["image_id"], *(listed[c] for c in columns), strict=True):
        label, reason = apply_label_policy(dict(zip(columns, values, strict=True)), options.labels, "dx")
        if reason is None and label not in classes:
            reason = f"label {label!r} not in the HAM10000 vocabulary {HAM10000_CLASSES}"
        if reason is not None:
            quarantine.add(image_id, found[image_id], reason)
        else:
            labels.append(sys.intern(label))  # a handful of classes: one string each, not one per image
        kept.append(reason is None)
    listed = listed[np.array(kept, dtype=bool)].reset_index(drop=True)
    records = pd.DataFrame({"image_id": listed["image_id"], "path": found.reindex(listed["image_id"]).to_numpy(),
                            "label": pd.Series(labels, dtype="object"), "lesion_id": listed["lesion_id"],
                            "patient_id": "", "age": listed.get("age", ""), "sex": listed.get("sex", ""),
                            "site": listed.get("localization", "")})
    notes = missing_files_note(len(set(metadata["image_id"])), missing_ids, HAM10000_METADATA_FILE,
                               _missing_part_hint(missing_ids))
    return quarantine.result(records, classes, normalised=normalised, notes=notes)

"""HAM10000 (Tschandl et al. 2018): metadata CSV + ``ISIC_*.jpg`` images, grouped by lesion."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mobiledx.data.adapters.registry import Quarantine, find_one, index_images, records_frame, register
from mobiledx.data.formats import HAM10000_CLASSES, HAM10000_METADATA_FILE, HAM10000_REQUIRED_COLUMNS
from mobiledx.data.manifest import ScanResult


@register("ham10000")
def scan_ham10000(raw_dir: Path) -> ScanResult:
    """HAM10000: ``HAM10000_metadata.csv`` plus ``ISIC_*.jpg`` anywhere below the root.

    Handles the distributed ``HAM10000_images_part_1/`` + ``_part_2/`` folders, a single folder,
    lowercase names and class sub-folders alike, since images are found by ``image_id``.
    """
    raw_dir = Path(raw_dir)
    quarantine = Quarantine()
    metadata_path = find_one(raw_dir, HAM10000_METADATA_FILE)
    metadata = pd.read_csv(metadata_path, dtype=str, keep_default_na=False)
    missing = [c for c in HAM10000_REQUIRED_COLUMNS if c not in metadata.columns]
    if missing:
        raise ValueError(f"{metadata_path}: missing required column(s) {missing}; found {list(metadata.columns)}")
    images = index_images(raw_dir, quarantine, metadata=(metadata_path,))

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
                "source_split": "",
            }
        )
    for stem, files in images.items():
        if stem not in listed:
            for path in files:
                quarantine.add(stem, path.relative_to(raw_dir).as_posix(), "image file not listed in the metadata")

    return ScanResult(records=records_frame(records), quarantine=quarantine.frame(), classes=list(HAM10000_CLASSES))

"""Class-per-folder layouts: any ``<class>/**/<image>`` collection, optionally below train/val/test."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from mobiledx.data.adapters.registry import DatasetLayoutError, Quarantine, index_images, records_frame, register
from mobiledx.data.manifest import ScanOptions, ScanResult


def scan_class_tree(raw_dir: Path, classes: list[str] | None, split_folders: tuple[str, ...]) -> ScanResult:
    """Images in ``[<split>/]<class>/...``; image id = path without extension (names repeat across splits)."""
    quarantine = Quarantine()
    images = index_images(raw_dir, quarantine)
    found_classes: set[str] = set()
    records = []
    for relative in images["path"]:
        parts = PurePosixPath(relative).parts
        image_id = relative.rsplit(".", 1)[0]
        source = parts[0].lower() if split_folders and parts[0].lower() in split_folders else ""
        class_parts = parts[1:] if source else parts
        if len(class_parts) < 2:
            quarantine.add(image_id, relative, "not inside a class folder")
            continue
        label = class_parts[0].lower() if classes else class_parts[0]
        if classes is not None and label not in classes:
            quarantine.add(image_id, relative, f"class folder {class_parts[0]!r} not in the vocabulary {classes}")
            continue
        found_classes.add(label)
        records.append({"image_id": image_id, "path": relative, "label": label, "lesion_id": "", "patient_id": "",
                        "age": "", "sex": "unknown", "site": "unknown", "source_split": source})
    frame = records_frame(records).sort_values("image_id").reset_index(drop=True)
    return ScanResult(records=frame, quarantine=quarantine.frame(), classes=classes or sorted(found_classes))


@register("folder")
def scan_class_folders(raw_dir: Path, options: ScanOptions = ScanOptions()) -> ScanResult:
    """Generic class-per-folder layout: ``<class>/<any sub-folders>/<image>``, or the same below
    ``train/``, ``val/`` and ``test/`` folders (kept in ``source_split``). Classes are the folder
    names, sorted. Without lesion or patient ids every image is its own group.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DatasetLayoutError(f"{raw_dir} is not a folder")
    top = {p.name.lower() for p in raw_dir.iterdir() if p.is_dir()}
    split_folders = ("train", "val", "test") if top and top <= {"train", "val", "test"} else ()
    return scan_class_tree(raw_dir, None, split_folders)

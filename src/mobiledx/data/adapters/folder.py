"""Class-per-folder layouts: any ``<class>/**/<image>`` collection, optionally below train/val/test."""

from __future__ import annotations

from collections import Counter
from pathlib import Path, PurePosixPath

from mobiledx.data.adapters.registry import (
    DatasetLayoutError,
    Quarantine,
    companion_reason,
    index_images,
    lookalike_names,
    lookalikes_described,
    name_key,
    nfc,
    read_copies_once,
    register,
)
from mobiledx.data.manifest import ScanOptions, ScanResult


def scan_class_tree(raw_dir: Path, classes: list[str] | None, split_folders: tuple[str, ...]) -> ScanResult:
    """Images in ``[<split>/]<class>/...``; image id = path without extension (names repeat across splits).

    Class folder names are compared as a person reads them: Unicode-normalised (NFC; macOS writes
    decomposed accents), so one name typed two ways is one class (counted). With a vocabulary
    (``classes``), letter case, width and invisible characters are ignored too (counted). Without one,
    two folders whose names a reader cannot tell apart (``Nevus`` and ``nevus``, a zero-width space)
    are a :class:`DatasetLayoutError` naming both: one class or two is the user's call, never a guess.
    """
    quarantine = Quarantine()
    images = index_images(raw_dir, quarantine)
    # the id is the path without extension: ``1.jpg`` and ``1.png`` of one folder share it (copies read once)
    images["stem"] = [nfc(relative.rsplit(".", 1)[0]) for relative in images["path"]]
    images = read_copies_once(raw_dir, images, quarantine)
    repeated = images["stem"].duplicated(keep=False)
    for image_id, paths in images[repeated].groupby("stem")["path"]:
        quarantine.add(image_id, ", ".join(paths), "several different files for one image id")
    images = images[~repeated]
    vocabulary = {name_key(name): name for name in classes or ()}
    found_classes: dict[str, set[str]] = {}  # class (NFC) -> folders holding it, as written
    normalised: Counter = Counter()
    records = []
    for relative in images["path"]:
        parts = PurePosixPath(relative).parts
        image_id = nfc(relative.rsplit(".", 1)[0])  # as in images["stem"]
        source = parts[0].lower() if split_folders and parts[0].lower() in split_folders else ""
        class_parts = parts[1:] if source else parts
        if len(class_parts) < 2:
            quarantine.add(image_id, relative, "not inside a class folder")
            continue
        written = class_parts[0]
        label = nfc(written)
        if classes is not None:
            if name_key(written) not in vocabulary:
                quarantine.add(image_id, relative, f"class folder {written!r} not in the vocabulary {classes}")
                continue
            label = vocabulary[name_key(written)]
            if label != written:
                normalised[f"label: class folder {written!r} read as {label!r}"] += 1
        elif label != written:
            normalised["label: class folder name Unicode-normalised (NFC)"] += 1
        found_classes.setdefault(label, set()).add("/".join(parts[:len(parts) - len(class_parts) + 1]))
        records.append({"image_id": image_id, "path": relative, "label": label, "lesion_id": "", "patient_id": "",
                        "age": "", "sex": "unknown", "site": "unknown", "source_split": source})
    clashes = lookalike_names(found_classes)
    if clashes:
        described = lookalikes_described(clashes, lambda name: f"{', '.join(sorted(found_classes[name]))}/")
        raise DatasetLayoutError(f"{raw_dir}: class folders whose names differ only in letter case, width, "
                                 f"invisible characters or lookalike letters of another script: {described}. One "
                                 f"class or two? Fix: rename the folders so that each class has one name, written "
                                 f"the same way everywhere")
    result = quarantine.result(records, classes or sorted(found_classes), normalised=dict(normalised))
    result.records = result.records.sort_values("image_id").reset_index(drop=True)
    return result


@register("folder")
def scan_class_folders(raw_dir: Path, options: ScanOptions = ScanOptions()) -> ScanResult:
    """Generic class-per-folder layout: ``<class>/<any sub-folders>/<image>``, or the same below
    ``train/``, ``val/`` and ``test/`` folders (kept in ``source_split``). Classes are the folder
    names (NFC), sorted. Without lesion or patient ids every image is its own group.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DatasetLayoutError(f"{raw_dir} is not a folder")
    top = {p.name.lower() for p in raw_dir.iterdir() if p.is_dir() and companion_reason(f"{p.name}/x") is None}
    split_folders = ("train", "val", "test") if top and top <= {"train", "val", "test"} else ()
    return scan_class_tree(raw_dir, None, split_folders)

"""Dataset adapters: read a raw dataset exactly as it is distributed into manifest records.

An adapter is a function ``scan(raw_dir) -> ScanResult`` registered under a *kind* with
:func:`register`. It lists images and their labels/metadata without decoding pixels; every file
or metadata row it cannot use becomes a quarantine entry with its reason (nothing is dropped
silently). Decoding, hashing and resizing happen afterwards in :mod:`mobiledx.data.ingest`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mobiledx.data.manifest import QUARANTINE_COLUMNS, ScanResult

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}

Adapter = Callable[[Path], ScanResult]
_REGISTRY: dict[str, Adapter] = {}


def register(kind: str) -> Callable[[Adapter], Adapter]:
    """Decorator registering an adapter function under ``kind`` (the value used in params.yaml)."""

    def decorate(function: Adapter) -> Adapter:
        _REGISTRY[kind] = function
        return function

    return decorate


def get_adapter(kind: str) -> Adapter:
    """The adapter registered for ``kind``; a clear error listing the known kinds otherwise."""
    if kind not in _REGISTRY:
        raise KeyError(f"unknown dataset kind {kind!r}; known kinds: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[kind]


def known_kinds() -> list[str]:
    return sorted(_REGISTRY)


class _Quarantine:
    """Collects refused inputs with their reason."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, image_id: str, path: str, reason: str) -> None:
        self.rows.append({"image_id": image_id, "path": path, "reason": reason})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=QUARANTINE_COLUMNS)


def _index_images(raw_dir: Path, quarantine: _Quarantine, metadata: tuple[Path, ...] = ()) -> dict[str, list[Path]]:
    """Map file stem -> image files under ``raw_dir``.

    Links that escape the dataset root and files that are neither images nor the dataset's
    ``metadata`` files are quarantined (hidden files such as ``.DS_Store`` are ignored).
    """
    root = raw_dir.resolve()
    expected = {m.resolve() for m in metadata}
    by_stem: dict[str, list[Path]] = {}
    for path in sorted(raw_dir.rglob("*")):
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


def _records_frame(records: list[dict]) -> pd.DataFrame:
    """Manifest records with every column present and categorical metadata normalised."""
    frame = pd.DataFrame(records, columns=["image_id", "path", "label", "group_id", "age", "sex", "site", "source_split"])
    frame["age"] = pd.to_numeric(frame["age"].replace("", np.nan), errors="coerce").astype(float)
    frame["sex"] = _clean_category(frame["sex"])
    frame["site"] = _clean_category(frame["site"])
    frame["source_split"] = frame["source_split"].fillna("").astype(str)
    return frame


def _find_one(raw_dir: Path, name: str) -> Path:
    matches = sorted(p for p in raw_dir.rglob("*") if p.is_file() and p.name.lower() == name.lower())
    if not matches:
        raise FileNotFoundError(f"{raw_dir}: no {name} found; is this the right dataset folder and kind?")
    if len(matches) > 1:
        listed = ", ".join(str(p) for p in matches)
        raise ValueError(f"{raw_dir}: several {name} files ({listed}); keep exactly one")
    return matches[0]


HAM10000_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
HAM10000_REQUIRED_COLUMNS = ["lesion_id", "image_id", "dx"]


def _clean_category(values: pd.Series) -> pd.Series:
    cleaned = values.fillna("").astype(str).str.strip().str.lower()
    return cleaned.mask(cleaned == "", "unknown")


@register("ham10000")
def scan_ham10000(raw_dir: Path) -> ScanResult:
    """HAM10000: ``HAM10000_metadata.csv`` plus ``ISIC_*.jpg`` anywhere below the root.

    Handles the distributed ``HAM10000_images_part_1/`` + ``_part_2/`` folders, a single folder,
    lowercase names and class sub-folders alike, since images are found by ``image_id``.
    """
    raw_dir = Path(raw_dir)
    quarantine = _Quarantine()
    metadata_path = _find_one(raw_dir, "HAM10000_metadata.csv")
    metadata = pd.read_csv(metadata_path, dtype=str, keep_default_na=False)
    missing = [c for c in HAM10000_REQUIRED_COLUMNS if c not in metadata.columns]
    if missing:
        raise ValueError(f"{metadata_path}: missing required column(s) {missing}; found {list(metadata.columns)}")
    images = _index_images(raw_dir, quarantine, metadata=(metadata_path,))

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

    return ScanResult(records=_records_frame(records), quarantine=quarantine.frame(), classes=list(HAM10000_CLASSES))


CNMC_CLASSES = ["all", "hem"]
CNMC_FILE_NAME = re.compile(r"^UID_(H?)(\d+)_(\d+)_(\d+)_(all|hem)$", re.IGNORECASE)
CNMC_TEST_LABELS = {"1": "all", "0": "hem"}


def _cnmc_subject(name: str) -> tuple[str, str] | None:
    """(group id, label) from a C-NMC file name; the healthy subjects' ``H`` prefix is stripped."""
    match = CNMC_FILE_NAME.match(Path(name).stem)
    return (f"subject_{int(match.group(2))}", match.group(5).lower()) if match else None


@register("cnmc")
def scan_cnmc(raw_dir: Path) -> ScanResult:
    """C-NMC 2019: ``fold_k/{all,hem}/UID_<subject>_<image>_<cell>_<label>.bmp`` training folds,
    plus, when present, the preliminary-test images (``1.bmp`` ...) with their labels CSV
    (columns ``Patient_ID, new_names, labels``; 1 = ALL, 0 = HEM), kept as ``source_split=test``.

    The subject id is the first token of the original file name; the label comes from the class
    folder (training) or the CSV (test) and must agree with the file name's suffix.
    """
    raw_dir = Path(raw_dir)
    quarantine = _Quarantine()
    label_files = sorted(p for p in raw_dir.rglob("*.csv") if "label" in p.name.lower())
    images = _index_images(raw_dir, quarantine, metadata=tuple(label_files))
    test_names = {}
    for label_file in label_files:
        table = pd.read_csv(label_file, dtype=str, keep_default_na=False)
        missing = {"Patient_ID", "new_names", "labels"} - set(table.columns)
        if missing:
            raise ValueError(f"{label_file}: missing column(s) {sorted(missing)}; found {list(table.columns)}")
        test_names.update({Path(row.new_names).stem: row for row in table.itertuples(index=False)})

    records = []
    for stem, files in sorted(images.items()):
        for path in files:
            relative = path.relative_to(raw_dir).as_posix()
            folder = path.parent.name.lower()
            in_fold = folder in CNMC_CLASSES and path.parent.parent.name.lower().startswith("fold_")
            if len(files) > 1:
                quarantine.add(stem, relative, "several files share this image id")
                continue
            if in_fold:
                parsed = _cnmc_subject(stem)
                if parsed is None:
                    quarantine.add(stem, relative, "file name does not follow UID_<subject>_<image>_<cell>_<label>")
                    continue
                if parsed[1] != folder:
                    quarantine.add(stem, relative, f"file name says {parsed[1]!r} but folder says {folder!r}")
                    continue
                group, label, source = parsed[0], folder, "train"
            elif stem in test_names:
                row = test_names[stem]
                parsed = _cnmc_subject(row.Patient_ID)
                label = CNMC_TEST_LABELS.get(str(row.labels).strip())
                if parsed is None or label is None or parsed[1] != label:
                    quarantine.add(stem, relative, f"labels CSV row is inconsistent: {row.Patient_ID!r}, label {row.labels!r}")
                    continue
                group, source = parsed[0], "test"
            else:
                quarantine.add(stem, relative, "neither in a fold_k/{all,hem}/ class folder nor in a labels CSV")
                continue
            records.append({"image_id": stem, "path": relative, "label": label, "group_id": group,
                            "age": np.nan, "sex": "unknown", "site": "unknown", "source_split": source})
    for stem in sorted(set(test_names) - set(images)):
        quarantine.add(stem, "", "listed in the labels CSV but no file found")
    return ScanResult(records=_records_frame(records), quarantine=quarantine.frame(), classes=list(CNMC_CLASSES))


ISIC_CLASSES = ["benign", "malignant"]


def _scan_class_folders(raw_dir: Path, classes: list[str] | None, split_folders: tuple[str, ...]) -> ScanResult:
    """Images in ``[<split>/]<class>/...``; image id = path without extension (names repeat across splits)."""
    quarantine = _Quarantine()
    images = _index_images(raw_dir, quarantine)
    found_classes: set[str] = set()
    records = []
    for files in images.values():
        for path in files:
            parts = path.relative_to(raw_dir).parts
            relative = path.relative_to(raw_dir).as_posix()
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
            records.append({"image_id": image_id, "path": relative, "label": label, "group_id": image_id,
                            "age": np.nan, "sex": "unknown", "site": "unknown", "source_split": source})
    frame = _records_frame(records).sort_values("image_id").reset_index(drop=True)
    return ScanResult(records=frame, quarantine=quarantine.frame(), classes=classes or sorted(found_classes))


@register("isic")
def scan_isic(raw_dir: Path) -> ScanResult:
    """ISIC benign/malignant, Kaggle layout: ``{train,test}/{benign,malignant}/*.jpg``.

    The source's train/test folders are kept in ``source_split``. The layout carries no lesion or
    patient ids, so each image is its own group: duplicates of one lesion cannot be detected.
    """
    return _scan_class_folders(Path(raw_dir), ISIC_CLASSES, split_folders=("train", "test", "val"))


@register("folder")
def scan_class_folders(raw_dir: Path) -> ScanResult:
    """Generic class-per-folder layout: ``<class>/<any sub-folders>/<image>``, or the same below
    ``train/``, ``val/`` and ``test/`` folders (kept in ``source_split``). Classes are the folder
    names, sorted. Without group ids every image is its own group.
    """
    raw_dir = Path(raw_dir)
    top = {p.name.lower() for p in raw_dir.iterdir() if p.is_dir()}
    split_folders = ("train", "val", "test") if top and top <= {"train", "val", "test"} else ()
    return _scan_class_folders(raw_dir, None, split_folders)


MEDMNIST_CLASS_NAMES = {
    "dermamnist": HAM10000_CLASSES,  # MedMNIST's label order is HAM10000's alphabetical dx order
    "bloodmnist": ["basophil", "eosinophil", "erythroblast", "immature_granulocytes", "lymphocyte",
                   "monocyte", "neutrophil", "platelet"],
    "pneumoniamnist": ["normal", "pneumonia"],
    "breastmnist": ["malignant", "normal_benign"],
}


@register("medmnist")
def scan_medmnist(raw_dir: Path) -> ScanResult:
    """MedMNIST ``<name>.npz`` (``{train,val,test}_{images,labels}`` arrays), its splits kept in
    ``source_split``. Class names come from the dataset name when known, else ``class_<k>``.
    Images are arrays, not files: ``path`` is ``<file>#<split>/<index>``.
    """
    raw_dir = Path(raw_dir)
    archives = sorted(raw_dir.glob("*.npz"))
    if len(archives) != 1:
        raise FileNotFoundError(f"{raw_dir}: expected exactly one MedMNIST .npz file, found {len(archives)}")
    archive = archives[0]
    quarantine = _Quarantine()
    _index_images(raw_dir, quarantine, metadata=(archive,))
    with np.load(archive) as data:
        arrays = {key: data[key] for key in data.files}
    n_classes = int(max(arrays[f"{s}_labels"].max() for s in ("train", "val", "test") if f"{s}_labels" in arrays)) + 1
    classes = MEDMNIST_CLASS_NAMES.get(archive.stem.split("_")[0].lower(), [f"class_{k}" for k in range(n_classes)])
    records, pixels = [], {}
    for split in ("train", "val", "test"):
        if f"{split}_images" not in arrays:
            continue
        labels = arrays[f"{split}_labels"].reshape(len(arrays[f"{split}_labels"]), -1)
        if labels.shape[1] != 1:
            raise ValueError(f"{archive}: multi-label targets ({labels.shape[1]} columns) are not supported")
        for index, (image, label) in enumerate(zip(arrays[f"{split}_images"], labels[:, 0])):
            image_id = f"{split}_{index:06d}"
            if not 0 <= int(label) < len(classes):
                quarantine.add(image_id, f"{archive.name}#{split}/{index}", f"label {int(label)} outside 0..{len(classes) - 1}")
                continue
            pixels[image_id] = image
            records.append({"image_id": image_id, "path": f"{archive.name}#{split}/{index}", "label": classes[int(label)],
                            "group_id": image_id, "age": np.nan, "sex": "unknown", "site": "unknown",
                            "source_split": split})
    return ScanResult(records=_records_frame(records), quarantine=quarantine.frame(), classes=list(classes), pixels=pixels)

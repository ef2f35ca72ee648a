"""MedMNIST ``.npz`` archives: images shipped as arrays, with their own train/val/test splits."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from mobiledx.data.adapters.registry import DatasetLayoutError, Quarantine, index_images, register
from mobiledx.data.formats import HAM10000_CLASSES
from mobiledx.data.manifest import ScanOptions, ScanResult

MEDMNIST_CLASS_NAMES = {
    "dermamnist": HAM10000_CLASSES,  # MedMNIST's label order is HAM10000's alphabetical dx order
    "bloodmnist": ["basophil", "eosinophil", "erythroblast", "immature_granulocytes", "lymphocyte",
                   "monocyte", "neutrophil", "platelet"],
    "pneumoniamnist": ["normal", "pneumonia"],
    "breastmnist": ["malignant", "normal_benign"],
}


@register("medmnist", arrays=True)
def scan_medmnist(raw_dir: Path, options: ScanOptions = ScanOptions()) -> ScanResult:
    """MedMNIST ``<name>.npz`` (``{train,val,test}_{images,labels}`` arrays), its splits kept in
    ``source_split``. Class names come from the dataset name when known, else ``class_<k>``.
    Images are arrays, not files: ``path`` is ``<file>#<split>/<index>``.
    """
    raw_dir = Path(raw_dir)
    archives = sorted(raw_dir.glob("*.npz"))
    if len(archives) != 1:
        raise DatasetLayoutError(f"{raw_dir}: expected exactly one MedMNIST .npz file, found {len(archives)}. Fix: put "
                                 f"the one <name>.npz there (e.g. dermamnist.npz)")
    archive = archives[0]
    quarantine = Quarantine()
    beside = index_images(raw_dir, quarantine, metadata=(archive,))
    for stem, path in zip(beside["stem"], beside["path"], strict=True):
        quarantine.add(stem, path, f"image file beside the MedMNIST archive, not read: the images are the arrays "
                                   f"of {archive.name}")
    try:
        with np.load(archive, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DatasetLayoutError(f"{archive} cannot be read as a NumPy .npz archive ({error}). Fix: download the "
                                 f"archive again") from None
    splits = [s for s in ("train", "val", "test") if f"{s}_images" in arrays and f"{s}_labels" in arrays]
    if not splits:
        raise DatasetLayoutError(f"{archive} holds none of train/val/test_images with their _labels (it holds "
                                 f"{', '.join(sorted(arrays)) or 'nothing'}). Fix: use a MedMNIST archive as "
                                 f"distributed")
    valid = [arrays[f"{s}_labels"][np.isfinite(arrays[f"{s}_labels"])] for s in splits
             if arrays[f"{s}_labels"].dtype.kind in "iuf"]
    n_classes = int(max((v.max() for v in valid if v.size), default=-1)) + 1
    classes = MEDMNIST_CLASS_NAMES.get(archive.stem.split("_")[0].lower(), [f"class_{k}" for k in range(n_classes)])
    records, pixels = [], {}
    for split in splits:
        labels = arrays[f"{split}_labels"]
        labels = labels.reshape(len(labels), -1) if labels.size else labels.reshape(len(labels), 1)
        if labels.shape[1] != 1:
            raise DatasetLayoutError(f"{archive}: multi-label targets ({labels.shape[1]} columns) are not supported. "
                                     f"Fix: use a single-label MedMNIST dataset")
        if len(labels) != len(arrays[f"{split}_images"]):
            raise DatasetLayoutError(f"{archive}: {len(arrays[f'{split}_images'])} {split} images but {len(labels)} "
                                     f"labels. Fix: download the archive again")
        for index, (image, label) in enumerate(zip(arrays[f"{split}_images"], labels[:, 0])):
            image_id = f"{split}_{index:06d}"
            path = f"{archive.name}#{split}/{index}"
            number = float(label) if labels.dtype.kind in "iuf" else math.nan
            if not math.isfinite(number) or not number.is_integer():
                quarantine.add(image_id, path, f"label {label!r} is not a whole number")
                continue
            if not 0 <= int(number) < len(classes):
                quarantine.add(image_id, path, f"label {int(number)} outside 0..{len(classes) - 1}")
                continue
            pixels[image_id] = image
            records.append(
                {
                    "image_id": image_id,
                    "path": path,
                    "label": classes[int(number)],
                    "lesion_id": "",
                    "patient_id": "",
                    "age": "",
                    "sex": "unknown",
                    "site": "unknown",
                    "source_split": split,
                }
            )
    return quarantine.result(records, list(classes), pixels=pixels)

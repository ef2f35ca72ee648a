"""MedMNIST ``.npz`` archives: images shipped as arrays, with their own train/val/test splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mobiledx.data.adapters.registry import DatasetLayoutError, Quarantine, index_images, records_frame, register
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
    index_images(raw_dir, quarantine, metadata=(archive,))
    with np.load(archive, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    n_classes = int(max(arrays[f"{s}_labels"].max() for s in ("train", "val", "test") if f"{s}_labels" in arrays)) + 1
    classes = MEDMNIST_CLASS_NAMES.get(archive.stem.split("_")[0].lower(), [f"class_{k}" for k in range(n_classes)])
    records, pixels = [], {}
    for split in ("train", "val", "test"):
        if f"{split}_images" not in arrays:
            continue
        labels = arrays[f"{split}_labels"].reshape(len(arrays[f"{split}_labels"]), -1)
        if labels.shape[1] != 1:
            raise DatasetLayoutError(f"{archive}: multi-label targets ({labels.shape[1]} columns) are not supported. "
                                     f"Fix: use a single-label MedMNIST dataset")
        for index, (image, label) in enumerate(zip(arrays[f"{split}_images"], labels[:, 0])):
            image_id = f"{split}_{index:06d}"
            if not 0 <= int(label) < len(classes):
                quarantine.add(
                    image_id, f"{archive.name}#{split}/{index}", f"label {int(label)} outside 0..{len(classes) - 1}"
                )
                continue
            pixels[image_id] = image
            records.append(
                {
                    "image_id": image_id,
                    "path": f"{archive.name}#{split}/{index}",
                    "label": classes[int(label)],
                    "lesion_id": "",
                    "patient_id": "",
                    "age": "",
                    "sex": "unknown",
                    "site": "unknown",
                    "source_split": split,
                }
            )
    return ScanResult(
        records=records_frame(records), quarantine=quarantine.frame(), classes=list(classes), pixels=pixels
    )

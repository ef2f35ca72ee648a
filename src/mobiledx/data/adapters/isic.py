"""ISIC benign/malignant in the Kaggle layout: ``{train,test}/{benign,malignant}/*.jpg``."""

from __future__ import annotations

from pathlib import Path

from mobiledx.data.adapters.folder import scan_class_tree
from mobiledx.data.adapters.registry import register
from mobiledx.data.manifest import ScanOptions, ScanResult

ISIC_CLASSES = ["benign", "malignant"]


@register("isic")
def scan_isic(raw_dir: Path, options: ScanOptions = ScanOptions()) -> ScanResult:
    """ISIC benign/malignant, Kaggle layout: ``{train,test}/{benign,malignant}/*.jpg``.

    The source's train/test folders are kept in ``source_split``. The layout carries no lesion or
    patient ids, so each image is its own group: duplicates of one lesion cannot be detected.
    """
    return scan_class_tree(Path(raw_dir), ISIC_CLASSES, split_folders=("train", "test", "val"))

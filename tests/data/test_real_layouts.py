"""A miniature of each real layout, with its quirks, through ingest → validate → split."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mobiledx.data.adapters import scan_class_folders, scan_cnmc, scan_isic, scan_medmnist
from mobiledx.data.intake import ingest
from mobiledx.params import SplitParams
from mobiledx.preparation.splits import split_manifest
from mobiledx.preparation.validation import validate_manifest
from tests.support import ham_rows, solid_image, write_cnmc, write_ham10000


def write_isic(root: Path, per_class: int = 6) -> Path:
    """Kaggle 'Skin Cancer: Malignant vs. Benign': the same file names recur in train/ and test/."""
    for s, split in enumerate(("train", "test")):
        for c, label in enumerate(("benign", "malignant")):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                solid_image((40 * c + i, 100 + s * 50, 10 * i)).save(folder / f"{i + 1}.jpg", quality=95)
    return root


def write_medmnist(root: Path, name: str = "dermamnist") -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    arrays = {}
    for split, n in (("train", 42), ("val", 14), ("test", 14)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 7).reshape(-1, 1)
    np.savez(root / f"{name}.npz", **arrays)
    return root


def write_cnmc_with_prelim_test(root: Path) -> Path:
    write_cnmc(root, {str(n): "all" for n in (3, 5, 7, 11)} | {f"H{n}": "hem" for n in (2, 4)})
    folder = root / "C-NMC_test_prelim_phase_data"
    folder.mkdir()
    rows = []
    for i, (subject, label) in enumerate([("21", "all"), ("21", "all"), ("H22", "hem"), ("H22", "hem"), ("23", "all")]):
        solid_image((200 - i * 10, 30, 30 + i), (32, 32)).save(folder / f"{i + 1}.bmp")
        rows.append({"Patient_ID": f"UID_{subject}_{i + 1}_1_{label}.bmp", "new_names": f"{i + 1}.bmp",
                     "labels": 1 if label == "all" else 0})
    pd.DataFrame(rows).to_csv(root / "C-NMC_test_prelim_phase_data_labels.csv", index=False)
    return root


def test_isic_keeps_source_split_and_unique_ids(tmp_path):
    scan = scan_isic(write_isic(tmp_path / "isic"))
    assert scan.quarantine.empty and scan.classes == ["benign", "malignant"]
    assert scan.records["image_id"].is_unique and "train/benign/1" in set(scan.records["image_id"])
    assert scan.records["source_split"].value_counts().to_dict() == {"test": 12, "train": 12}


def test_isic_unknown_class_folder_is_quarantined(tmp_path):
    root = write_isic(tmp_path / "isic", per_class=2)
    (root / "train" / "unsure").mkdir()
    solid_image((1, 1, 1)).save(root / "train" / "unsure" / "9.jpg")
    reasons = dict(zip(scan_isic(root).quarantine["image_id"], scan_isic(root).quarantine["reason"]))
    assert "not in the vocabulary" in reasons["train/unsure/9"]


def test_class_per_folder_layout(tmp_path):
    root = tmp_path / "cells"
    for label in ("Normal", "Tumour"):
        (root / label / "batch1").mkdir(parents=True)
        for i in range(3):
            solid_image((i * 50, 9, 9) if label == "Normal" else (9, i * 50, 9)).save(
                root / label / "batch1" / f"{i}.png"
            )
    (root / "stray.png").write_bytes(b"")
    scan = scan_class_folders(root)
    assert scan.classes == ["Normal", "Tumour"] and len(scan.records) == 6
    assert set(scan.records["source_split"]) == {""}
    assert dict(zip(scan.quarantine["image_id"], scan.quarantine["reason"])) == {"stray": "not inside a class folder"}


def test_medmnist_arrays_and_class_names(tmp_path):
    scan = scan_medmnist(write_medmnist(tmp_path / "derma"))
    assert scan.classes == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    assert len(scan.records) == 70 and set(scan.pixels) == set(scan.records["image_id"])
    assert scan.records["source_split"].value_counts().to_dict() == {"train": 42, "val": 14, "test": 14}


def test_cnmc_preliminary_test_images_join_their_labels_csv(tmp_path):
    scan = scan_cnmc(write_cnmc_with_prelim_test(tmp_path / "cnmc"))
    assert scan.quarantine.empty
    test = scan.records[scan.records["source_split"] == "test"].set_index("image_id")
    assert test.loc["1", "label"] == "all" and test.loc["3", "label"] == "hem"
    assert test.loc["3", "patient_id"] == "subject_22"


def test_non_image_file_in_an_image_folder_is_quarantined(tmp_path):
    root = write_ham10000(tmp_path / "ham", ham_rows(1))
    (root / "HAM10000_images_part_1" / "Thumbs.db").write_bytes(b"\x00\x01")  # companions: ignored, listed
    (root / "HAM10000_images_part_1" / "README").write_text("scanned 2018")
    (root / "HAM10000_images_part_1" / "scan-log").write_text("scanned 2018")
    (root / "HAM10000_images_part_1" / "notes.docx").write_bytes(b"PK")
    result = ingest(root, "ham10000", image_size=8, images_path=tmp_path / "images.npy", workers=1)
    reasons = dict(zip(result.quarantine["image_id"], result.quarantine["reason"]))
    assert reasons == {"notes": "not an image file (.docx)", "scan-log": "not an image file (no extension)"}
    ignored = dict(zip(result.ignored["path"], result.ignored["reason"]))
    assert ignored == {"HAM10000_metadata.csv": "read as the dataset's metadata",
                       "HAM10000_images_part_1/README": "licence, attribution or readme text shipped with the data",
                       "HAM10000_images_part_1/Thumbs.db": "Windows thumbnail cache (Thumbs.db)"}


def write_class_folders(root: Path) -> Path:
    for c, label in enumerate(("benign", "malignant", "normal")):
        (root / label).mkdir(parents=True)
        for i in range(8):
            solid_image((60 * c + i, 7 * i, 20)).save(root / label / f"img_{i}.png")
    return root


LAYOUTS = {
    "folder": (write_class_folders, SplitParams(test_fraction=0.25, val_fraction=0.25)),
    "ham10000": (lambda root: write_ham10000(root, ham_rows(3)), SplitParams(test_fraction=0.3, val_fraction=0.2)),
    "cnmc": (write_cnmc_with_prelim_test, SplitParams(method="source", val_fraction=0.2)),
    "isic": (write_isic, SplitParams(method="source", val_fraction=0.2)),
    "medmnist": (write_medmnist, SplitParams(method="source")),
}


@pytest.mark.parametrize("kind", sorted(LAYOUTS))
def test_each_layout_runs_ingest_validate_split(tmp_path, kind):
    write, config = LAYOUTS[kind]
    result = ingest(write(tmp_path / kind), kind, image_size=16, images_path=tmp_path / "images.npy", workers=1)
    outcome = validate_manifest(
        result.manifest, result.classes, result.quarantine, min_images_per_class=1, max_quarantined_fraction=0.0
    )
    assert outcome.success, [f.name for f in outcome.critical_failures()]
    assignment = split_manifest(result.manifest, config, seed=0)
    assert set(assignment["split"]) == {"train", "val", "test"}
    assert (assignment.groupby("group_id")["split"].nunique() == 1).all()
    assert result.images.shape == (len(result.manifest), 16, 16, 3)

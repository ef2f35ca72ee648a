"""Shared fixtures: tiny images and datasets written in the real datasets' layouts."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]


def solid_image(colour: tuple[int, int, int], size=(40, 30), mode="RGB") -> Image.Image:
    """A plain image whose colour identifies it after decoding."""
    return Image.new("RGB", size, colour).convert(mode)


def write_ham10000(root: Path, rows: list[dict], folders=("HAM10000_images_part_1", "HAM10000_images_part_2")) -> Path:
    """A miniature HAM10000: metadata CSV + JPEGs split over the distributed part folders."""
    root.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    columns = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
    frame = frame.reindex(columns=columns + [c for c in frame.columns if c not in columns])
    frame.to_csv(root / "HAM10000_metadata.csv", index=False)
    for i, row in enumerate(rows):
        folder = root / folders[i % len(folders)]
        folder.mkdir(exist_ok=True)
        solid_image((i * 5 % 256, 255 - i * 3 % 256, 90)).save(folder / f"{row['image_id']}.jpg", quality=95)
    return root


def ham_rows(n_lesions_per_class: int = 3, classes=("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")) -> list[dict]:
    """Metadata rows: each lesion has two images; ages as floats, one empty, one 'unknown' sex."""
    rows, image = [], 24306
    for c, dx in enumerate(classes):
        for lesion in range(n_lesions_per_class):
            lesion_id = f"HAM_{c * 100 + lesion:07d}"
            for _ in range(2):
                rows.append({"lesion_id": lesion_id, "image_id": f"ISIC_{image:07d}", "dx": dx, "dx_type": "histo",
                             "age": f"{40 + 5 * lesion}.0", "sex": "female" if lesion % 2 else "male",
                             "localization": "back"})
                image += 1
    rows[0]["age"] = ""
    rows[2]["sex"] = "unknown"
    return rows


@pytest.fixture
def ham_dir(tmp_path) -> Path:
    return write_ham10000(tmp_path / "ham", ham_rows())


def write_cnmc(root: Path, subjects: dict[str, str], cells: int = 3) -> Path:
    """A miniature C-NMC 2019 training set: fold_k/{all,hem}/UID_<subject>_<image>_<cell>_<label>.bmp."""
    for i, (subject, label) in enumerate(sorted(subjects.items())):
        folder = root / "training_data" / f"fold_{i % 3}" / label
        folder.mkdir(parents=True, exist_ok=True)
        for cell in range(cells):
            shade = (i * 7 + cell) % 40  # every file distinct: identical files would be de-duplicated
            colour = (150 + shade, 60, 200) if label == "all" else (90, 40 + shade, 120)
            solid_image(colour, (32, 32)).save(folder / f"UID_{subject}_{cell + 1}_1_{label}.bmp")
    return root


@pytest.fixture
def cnmc_dir(tmp_path) -> Path:
    subjects = {str(n): "all" for n in (3, 5, 7, 11)} | {f"H{n}": "hem" for n in (2, 4)}
    return write_cnmc(tmp_path / "cnmc", subjects)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)

"""The synthetic demo data: real layouts and value conventions, deterministic, read by the real adapters."""

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mobiledx.data.adapters import scan_cnmc, scan_ham10000
from mobiledx.data.demo import generate_cnmc_demo, generate_ham10000_demo


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def skin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "skin"
    generate_ham10000_demo(root, n_images=140, seed=3)
    return root


@pytest.fixture(scope="module")
def blood(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "blood"
    generate_cnmc_demo(root, n_subjects=9, cells_per_subject=6, seed=3)
    return root


def test_skin_demo_follows_ham10000_conventions(skin):
    metadata = pd.read_csv(skin / "HAM10000_metadata.csv")
    assert list(metadata.columns) == ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
    assert metadata["image_id"].str.fullmatch(r"ISIC_\d{7}").all() and metadata["image_id"].is_unique
    assert metadata["lesion_id"].str.fullmatch(r"HAM_\d{7}").all()
    counts = metadata["dx"].value_counts()
    assert len(metadata) == 140 and set(counts.index) == {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}
    assert counts.min() >= 15 and counts.idxmax() == "nv"
    assert set(metadata["dx_type"]) <= {"histo", "follow_up", "consensus", "confocal"}
    assert set(metadata["sex"]) <= {"male", "female", "unknown"}


def test_skin_demo_has_the_quirks_of_the_real_metadata(tmp_path):
    generate_ham10000_demo(tmp_path / "big", n_images=700, seed=42)
    metadata = pd.read_csv(tmp_path / "big" / "HAM10000_metadata.csv")
    assert metadata["age"].isna().any() and (metadata["age"].dropna() % 5 == 0).all()
    assert (metadata["sex"] == "unknown").any() and (metadata["localization"] == "unknown").any()
    per_lesion = metadata.groupby("lesion_id")
    assert per_lesion.size().max() > 1  # several images for some lesions
    assert (per_lesion[["dx", "sex", "localization"]].nunique() == 1).all().all()  # ... sharing lesion metadata
    text = (tmp_path / "big" / "HAM10000_metadata.csv").read_text()
    assert re.search(r",\d+\.0,", text)  # ages written as floats, like 80.0


def test_skin_images_are_landscape_rgb_jpegs(skin):
    images = sorted((skin / "HAM10000_images_part_1").glob("ISIC_*.jpg"))
    assert len(images) == 140
    with Image.open(images[0]) as image:
        assert image.format == "JPEG" and image.mode == "RGB" and image.size == (200, 150)


def test_blood_demo_follows_cnmc_layout(blood):
    files = sorted((blood / "training_data").glob("fold_*/*/*.bmp"))
    assert files
    subjects_per_fold: dict[str, set] = {}
    labels = []
    for path in files:
        match = re.fullmatch(r"UID_(H?)(\d+)_(\d+)_(\d+)_(all|hem)\.bmp", path.name)
        assert match, path.name
        assert match.group(5) == path.parent.name and (match.group(1) == "H") == (path.parent.name == "hem")
        subjects_per_fold.setdefault(match.group(1) + match.group(2), set()).add(path.parent.parent.name)
        labels.append(match.group(5))
    assert all(len(folds) == 1 for folds in subjects_per_fold.values())  # a subject sits in one fold
    for fold in ("fold_0", "fold_1", "fold_2"):
        assert {p.parent.name for p in files if p.parent.parent.name == fold} == {"all", "hem"}
    ratio = labels.count("all") / labels.count("hem")
    assert 1.3 <= ratio <= 3.0  # roughly 2:1 like C-NMC


def test_demo_is_read_by_the_real_adapters(skin, blood):
    ham = scan_ham10000(skin)
    assert ham.quarantine.empty and len(ham.records) == 140
    cnmc = scan_cnmc(blood)
    assert cnmc.quarantine.empty and set(cnmc.records["label"]) == {"all", "hem"}


def test_same_seed_same_bytes_other_seed_other_images(tmp_path, skin):
    generate_ham10000_demo(tmp_path / "again", n_images=140, seed=3)
    generate_ham10000_demo(tmp_path / "other", n_images=140, seed=4)
    assert tree_hash(tmp_path / "again") == tree_hash(skin)
    assert tree_hash(tmp_path / "other") != tree_hash(skin)


def test_classes_differ_visibly(skin):
    """The signal is learnable: mean colour per class differs between at least some classes."""
    metadata = pd.read_csv(skin / "HAM10000_metadata.csv")
    means = {}
    for dx, rows in metadata.groupby("dx"):
        pixels = [
            np.asarray(Image.open(skin / "HAM10000_images_part_1" / f"{i}.jpg"), float)[50:100, 70:130].mean((0, 1))
            for i in rows["image_id"]
        ]
        means[dx] = np.mean(pixels, axis=0)
    spread = max(np.abs(means[a] - means[b]).max() for a in means for b in means)
    assert spread > 20


def test_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        generate_ham10000_demo(tmp_path / "x", n_images=105, seed=0)

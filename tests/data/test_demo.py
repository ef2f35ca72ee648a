"""Synthetic demo datasets: native HAM10000 / C-NMC 2019 layouts, real value conventions, determinism."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mobiledx.data.demo import (
    HAM10000_CLASSES,
    HAM10000_COLUMNS,
    HAM10000_LOCALIZATIONS,
    HAM10000_REAL_COUNTS,
    _ham_class_counts,
    generate_cnmc_demo,
    generate_ham10000_demo,
)

SKIN_N = 120
BLOOD_SUBJECTS = 9
BLOOD_CELLS = 6
CNMC_NAME = re.compile(r"UID_(H?)(\d+)_(\d+)_(\d+)_(all|hem)\.bmp")


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def skin(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("demo") / "skin"
    returned = generate_ham10000_demo(root, n_images=SKIN_N, seed=11)
    return root, returned


@pytest.fixture(scope="module")
def blood(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("demo") / "blood"
    returned = generate_cnmc_demo(root, n_subjects=BLOOD_SUBJECTS, cells_per_subject=BLOOD_CELLS, seed=11)
    return root, returned


# ---------------------------------------------------------------------------------------------- HAM10000


def test_class_counts_follow_real_proportions_with_a_floor():
    for n in (7, 50, 80, 105, 140, 200, 700, 2000):
        counts = _ham_class_counts(n)
        assert sum(counts.values()) == n and set(counts) == set(HAM10000_CLASSES)
        assert min(counts.values()) >= min(15, n // 7)
        if n >= 105:
            assert min(counts.values()) >= 15
        if n >= 200:
            assert max(counts, key=counts.get) == "nv"
    assert _ham_class_counts(sum(HAM10000_REAL_COUNTS.values())) == HAM10000_REAL_COUNTS
    big = _ham_class_counts(700)
    assert 0.6 < big["nv"] / 700 < 0.7  # nv dominates like the real 67 %


def test_metadata_csv_has_the_real_columns_and_id_formats(skin):
    root, returned = skin
    text = (root / "HAM10000_metadata.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "lesion_id,image_id,dx,dx_type,age,sex,localization"
    metadata = pd.read_csv(root / "HAM10000_metadata.csv")
    assert list(metadata.columns) == HAM10000_COLUMNS
    assert len(metadata) == SKIN_N
    assert metadata["lesion_id"].str.fullmatch(r"HAM_\d{7}").all()
    assert metadata["image_id"].str.fullmatch(r"ISIC_\d{7}").all() and metadata["image_id"].is_unique
    pd.testing.assert_frame_equal(returned.reset_index(drop=True), metadata, check_dtype=False)


def test_every_class_has_at_least_15_images_and_nv_is_the_majority(tmp_path, skin):
    counts = skin[1]["dx"].value_counts()
    assert set(counts.index) == set(HAM10000_CLASSES) and counts.min() >= 15
    assert counts.idxmax() == "nv"
    small = generate_ham10000_demo(tmp_path / "small", n_images=80, seed=0, image_size=(40, 30))
    assert len(small) == 80 and set(small["dx"]) == set(HAM10000_CLASSES)


def test_metadata_value_conventions(skin):
    root, _ = skin
    metadata = pd.read_csv(root / "HAM10000_metadata.csv")
    assert set(metadata["dx_type"]) <= {"histo", "follow_up", "consensus", "confocal"}
    assert set(metadata["sex"]) <= {"male", "female", "unknown"} and (metadata["sex"] == "unknown").any()
    assert set(metadata["localization"]) <= set(HAM10000_LOCALIZATIONS)
    assert (metadata["localization"] == "unknown").any()
    # Ages: floats in 5-year steps written like 80.0, some empty (-> NaN), some 0.0.
    assert metadata["age"].dtype == float and metadata["age"].isna().any()
    known = metadata["age"].dropna()
    assert ((known % 5) == 0).all() and known.between(0, 85).all() and (known == 0).any()
    age_fields = [line.split(",")[4] for line in (root / "HAM10000_metadata.csv").read_text().splitlines()[1:]]
    assert "" in age_fields and all(re.fullmatch(r"\d+\.0", a) for a in age_fields if a)


def test_some_lesions_have_several_images_sharing_their_metadata(skin):
    metadata = pd.read_csv(skin[0] / "HAM10000_metadata.csv", keep_default_na=False)  # age "" stays comparable
    sizes = metadata.groupby("lesion_id").size()
    assert sizes.max() > 1 and sizes.max() <= 4 and (sizes == 1).sum() > (sizes > 1).sum()
    shared = metadata.groupby("lesion_id")[["dx", "dx_type", "age", "sex", "localization"]].nunique()
    assert (shared == 1).all().all()


def test_images_are_landscape_rgb_jpegs_named_by_image_id(skin, tmp_path):
    root, metadata = skin
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert {p.relative_to(root).as_posix() for p in files} == {"HAM10000_metadata.csv"} | {
        f"HAM10000_images_part_1/{i}.jpg" for i in metadata["image_id"]
    }
    for path in files[:5]:
        if path.suffix == ".jpg":
            with Image.open(path) as image:
                assert image.format == "JPEG" and image.mode == "RGB" and image.size == (200, 150)
    generate_ham10000_demo(tmp_path / "sized", n_images=7, seed=0, image_size=(64, 48))
    with Image.open(next((tmp_path / "sized" / "HAM10000_images_part_1").glob("ISIC_*.jpg"))) as image:
        assert image.size == (64, 48)


def test_classes_differ_visually(skin):
    """A crude check of the class signal: mean centre colour per class (mel darkest, vasc reddest)."""
    root, metadata = skin
    means = {}
    for dx, rows in metadata.groupby("dx"):
        crops = [np.asarray(Image.open(root / "HAM10000_images_part_1" / f"{i}.jpg"), float)[55:95, 80:120]
                 for i in rows["image_id"]]
        means[dx] = np.mean([c.mean((0, 1)) for c in crops], axis=0)
    brightness = {dx: m.mean() for dx, m in means.items()}
    redness = {dx: m[0] - m[1] for dx, m in means.items()}
    assert min(brightness, key=brightness.get) == "mel"
    assert max(redness, key=redness.get) == "vasc"
    assert brightness["df"] > brightness["nv"] and brightness["bkl"] > brightness["nv"]


def test_skin_demo_is_deterministic(skin, tmp_path):
    root, _ = skin
    generate_ham10000_demo(tmp_path / "again", n_images=SKIN_N, seed=11)
    generate_ham10000_demo(tmp_path / "other", n_images=SKIN_N, seed=12)
    assert tree_hash(tmp_path / "again") == tree_hash(root)
    image = "HAM10000_images_part_1"
    assert tree_hash(tmp_path / "other" / image) != tree_hash(root / image)


def test_skin_refuses_a_non_empty_folder_and_bad_arguments(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        generate_ham10000_demo(tmp_path / "full", n_images=20, seed=0)
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    generate_ham10000_demo(tmp_path / "empty", n_images=7, seed=0, image_size=(32, 24))  # empty is fine
    with pytest.raises(ValueError):
        generate_ham10000_demo(tmp_path / "tiny", n_images=6, seed=0)


# ---------------------------------------------------------------------------------------------- C-NMC


def test_cnmc_layout_and_file_names(blood):
    root, table = blood
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert files and all(p.suffix == ".bmp" for p in files)
    assert {p.relative_to(root).as_posix() for p in files} == set(table["path"])
    assert list(table.columns) == ["path", "subject", "label", "fold"]
    for path in files:
        rel = path.relative_to(root).parts
        assert rel[0] == "training_data" and re.fullmatch(r"fold_[012]", rel[1]) and rel[2] in {"all", "hem"}
        match = CNMC_NAME.fullmatch(path.name)
        assert match, path.name
        assert match.group(5) == rel[2]  # suffix agrees with the class folder
        assert (match.group(1) == "H") == (rel[2] == "hem")  # H prefix iff healthy
    for row in table.itertuples():
        match = CNMC_NAME.fullmatch(Path(row.path).name)
        assert match.group(1) + match.group(2) == row.subject and match.group(5) == row.label
        assert Path(row.path).parts[1] == f"fold_{row.fold}"


def test_cnmc_subjects_folds_and_class_ratio(blood):
    _, table = blood
    assert table["subject"].nunique() == BLOOD_SUBJECTS
    assert (table.groupby("subject")["fold"].nunique() == 1).all()  # a subject sits in one fold
    assert (table.groupby("subject")["label"].nunique() == 1).all()  # and has one diagnosis
    for fold in (0, 1, 2):
        assert set(table.loc[table["fold"] == fold, "label"]) == {"all", "hem"}
    subjects = table.drop_duplicates("subject")["label"].value_counts()
    assert subjects["all"] == 6 and subjects["hem"] == 3
    ratio = (table["label"] == "all").sum() / (table["label"] == "hem").sum()
    assert 1.3 <= ratio <= 3.0  # roughly 2:1 like C-NMC
    numbers = table["subject"].str.lstrip("H")
    assert numbers.nunique() == BLOOD_SUBJECTS  # no "11" and "H11" pair
    per_subject = table.groupby("subject").size()
    assert per_subject.between(round(0.7 * BLOOD_CELLS), round(1.3 * BLOOD_CELLS)).all()


def test_cnmc_images_are_rgb_cells_on_black(blood):
    root, table = blood
    area = {"all": [], "hem": []}
    for row in table.itertuples():
        with Image.open(root / row.path) as image:
            assert image.format == "BMP" and image.mode == "RGB" and image.size == (96, 96)
            pixels = np.asarray(image)
        assert (pixels[0, 0] == 0).all() and (pixels[-1, -1] == 0).all()  # segmented: pure black background
        area[row.label].append((pixels.max(axis=2) > 0).mean())
    assert np.mean(area["all"]) > np.mean(area["hem"])  # blasts are larger cells


def test_cnmc_demo_is_deterministic(blood, tmp_path):
    root, table = blood
    again = generate_cnmc_demo(tmp_path / "again", BLOOD_SUBJECTS, BLOOD_CELLS, seed=11)
    generate_cnmc_demo(tmp_path / "other", BLOOD_SUBJECTS, BLOOD_CELLS, seed=12)
    assert tree_hash(tmp_path / "again") == tree_hash(root)
    pd.testing.assert_frame_equal(again, table)
    assert tree_hash(tmp_path / "other") != tree_hash(root)


def test_cnmc_refuses_a_non_empty_folder_and_bad_arguments(tmp_path):
    (tmp_path / "full" / "sub").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        generate_cnmc_demo(tmp_path / "full", n_subjects=6, cells_per_subject=2, seed=0)
    with pytest.raises(ValueError):
        generate_cnmc_demo(tmp_path / "few", n_subjects=5, cells_per_subject=2, seed=0)
    small = generate_cnmc_demo(tmp_path / "six", n_subjects=6, cells_per_subject=1, seed=0, image_px=32)
    assert set(small["label"]) == {"all", "hem"} and small["subject"].nunique() == 6

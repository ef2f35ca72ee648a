"""What real downloads contain, handled honestly: exact metadata, unfit images, links, partial downloads."""

import math
import os

import pandas as pd
import pytest
from PIL import Image

from mobiledx.data.adapters.registry import DatasetLayoutError
from mobiledx.data.fields import convert_fields
from mobiledx.data.intake import ImageFitness, ingest
from mobiledx.preparation.validation import DataValidationError, raise_for_critical, validate_manifest
from mobiledx.preparation.validation_report import render_report
from tests.support import ham_rows, solid_image, write_ham10000


def _records(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"image_id": [f"i{k}" for k in range(n)], "path": [f"i{k}.jpg" for k in range(n)], "label": ["a"] * n,
            "lesion_id": [""] * n, "patient_id": [""] * n, "age": [""] * n, "sex": [""] * n, "site": [""] * n}
    return pd.DataFrame({**base, **columns})


def test_every_metadata_value_converts_exactly_or_refuses_its_row_with_the_raw_value():
    records, report = convert_fields(_records(
        age=["45.0", " 80 ", "", "45y", "0.0", "nan"],
        sex=["male", " Female", "", "M", "other", "unknown"],
        site=["back", "Upper Extremity", "", "face", "back", "back"]))
    assert report.refused == {3: "age '45y' is not a number of years", 4: "sex 'other' is not male, female or unknown",
                              5: "age 'nan' is not a finite number of years"}
    assert records["age"].tolist()[:2] == [45.0, 80.0] and math.isnan(records["age"][2])
    assert records["age"][4] == 0.0  # 0.0 is a real age, not "missing"
    assert records["sex"].tolist()[:4] == ["male", "female", "unknown", "male"]
    assert records["site"].tolist()[:3] == ["back", "upper extremity", "unknown"]
    assert report.as_dict() == {
        "age: empty, kept as unknown": 1, "age: surrounding spaces removed": 1, "sex: 'M' read as 'male'": 1,
        "sex: empty, kept as unknown": 1, "sex: lower-cased": 2, "sex: surrounding spaces removed": 1,
        "site: empty, kept as unknown": 1, "site: lower-cased": 1}


def test_unparseable_metadata_is_quarantined_by_ingest_and_normalisations_are_reported(tmp_path):
    rows = ham_rows(1)
    rows[3]["age"] = "sixty"
    rows[5]["sex"] = "F"
    root = write_ham10000(tmp_path / "ham", rows)
    result = ingest(root, "ham10000", 8, tmp_path / "images.npy", workers=1)
    why = dict(zip(result.quarantine["image_id"], result.quarantine["reason"]))
    assert why == {rows[3]["image_id"]: "age 'sixty' is not a number of years"}
    assert result.manifest.set_index("image_id").loc[rows[5]["image_id"], "sex"] == "female"
    assert result.normalised["sex: 'F' read as 'female'"] == 1 and result.normalised["age: empty, kept as unknown"] == 1
    outcome = validate_manifest(result.manifest, result.classes, result.quarantine, 1, 0.5,
                                ingest_info={"normalised": result.normalised, "grouping": result.grouping})
    report = render_report(outcome, "ham")
    assert "| sex: 'F' read as 'female' | 1 |" in report and "grouped by lesion (7 lesions)" in report


def _write_sized(folder, name: str, size: tuple[int, int]) -> None:
    Image.new("RGB", size, (120, 60, 30)).save(folder / f"{name}.jpg", quality=95)


def test_images_unfit_for_the_model_are_quarantined_or_kept_and_counted(tmp_path):
    rows = ham_rows(1)
    root = write_ham10000(tmp_path / "ham", rows, folders=("images",))
    _write_sized(root / "images", rows[0]["image_id"], (10, 12))
    _write_sized(root / "images", rows[1]["image_id"], (400, 60))
    result = ingest(root, "ham10000", 8, tmp_path / "images.npy", workers=1)
    why = dict(zip(result.quarantine["image_id"], result.quarantine["reason"]))
    assert why == {
        rows[0]["image_id"]: "image too small: 10x12 px (a side below ingest.min_image_side=16)",
        rows[1]["image_id"]: "image too elongated: 400x60 px (aspect ratio above ingest.max_aspect_ratio=4)"}
    kept = ingest(root, "ham10000", 8, tmp_path / "images.npy", workers=1, fitness=ImageFitness(quarantine=False))
    assert kept.quarantine.empty and kept.unfit_kept == {"image too small": 1, "image too elongated": 1}
    assert kept.manifest.set_index("image_id").loc[rows[1]["image_id"], ["width", "height"]].tolist() == [400, 60]


def test_a_linked_dataset_folder_is_followed(tmp_path):
    """Big datasets live on another disk and are linked in: the whole folder as a link works."""
    elsewhere = write_ham10000(tmp_path / "big-disk" / "HAM10000", ham_rows(1))
    (tmp_path / "raw").mkdir()
    os.symlink(elsewhere, tmp_path / "raw" / "ham10000")
    result = ingest(tmp_path / "raw" / "ham10000", "ham10000", 8, tmp_path / "images.npy", workers=1)
    assert len(result.manifest) == 14 and result.quarantine.empty


def test_a_link_loop_is_a_clear_error(tmp_path):
    root = write_ham10000(tmp_path / "ham", ham_rows(1))
    os.symlink(root, root / "HAM10000_images_part_1" / "again")
    with pytest.raises(DatasetLayoutError, match="a link loop. Fix: remove the link"):
        ingest(root, "ham10000", 8, tmp_path / "images.npy", workers=1)


def test_a_missing_ham10000_archive_is_named(tmp_path):
    rows = [{"lesion_id": f"HAM_{i:07d}", "image_id": f"ISIC_{24306 + i:07d}", "dx": "nv", "dx_type": "histo",
             "age": "50.0", "sex": "male", "localization": "back"} for i in range(0, 10_015, 400)]
    root = write_ham10000(tmp_path / "ham", rows, folders=("HAM10000_images_part_1",))
    for row in rows:
        if int(row["image_id"][-7:]) >= 29306:  # the second archive was never extracted
            (root / "HAM10000_images_part_1" / f"{row['image_id']}.jpg").unlink()
    result = ingest(root, "ham10000", 8, tmp_path / "images.npy", workers=1)
    assert result.notes == [
        "13 of the 26 images listed in HAM10000_metadata.csv have no file (ISIC_0029506 … ISIC_0034306): the download "
        "looks partial. They are the ids of the release's archive HAM10000_images_part_2: download and extract "
        "HAM10000_images_part_2.zip there."]
    outcome = validate_manifest(result.manifest, result.classes, result.quarantine, 1, 0.05,
                                ingest_info={"notes": result.notes})
    with pytest.raises(DataValidationError, match=r"at most 5.00% of inputs are quarantined[\s\S]*archive "
                                                  r"HAM10000_images_part_2"):
        raise_for_critical(outcome, "ham")


def test_files_linked_from_outside_are_quarantined_not_read(tmp_path):
    rows = ham_rows(1)
    root = write_ham10000(tmp_path / "ham", rows, folders=("images",))
    solid_image((1, 2, 3)).save(tmp_path / "outside.jpg")
    (root / "images" / f"{rows[0]['image_id']}.jpg").unlink()
    os.symlink(tmp_path / "outside.jpg", root / "images" / f"{rows[0]['image_id']}.jpg")
    result = ingest(root, "ham10000", 8, tmp_path / "images.npy", workers=1)
    why = dict(zip(result.quarantine["image_id"], result.quarantine["reason"]))
    assert why[rows[0]["image_id"]] in ("path resolves outside the dataset root",
                                        "image listed in HAM10000_metadata.csv but no file found")
    assert rows[0]["image_id"] not in set(result.manifest["image_id"])


def test_an_image_listed_twice_is_quarantined_at_every_listing_never_dropped_silently(tmp_path):
    rows = ham_rows(1)
    root = write_ham10000(tmp_path / "ham", rows)
    metadata = pd.read_csv(root / "HAM10000_metadata.csv")
    twice = rows[2]["image_id"]
    pd.concat([metadata, metadata[metadata["image_id"] == twice].assign(dx="mel")]).to_csv(
        root / "HAM10000_metadata.csv", index=False)
    result = ingest(root, "ham10000", 8, tmp_path / "images.npy", workers=1)
    listed = result.quarantine[result.quarantine["image_id"] == twice]
    assert listed["reason"].tolist() == ["image id listed 2 times in HAM10000_metadata.csv: which row describes it "
                                         "is unknown"] * 2
    assert listed["path"].str.endswith(f"{twice}.jpg").all()
    assert twice not in set(result.manifest["image_id"])
    assert len(result.manifest) + len(result.quarantine) == len(rows) + 1  # every listing accounted for


def test_a_label_policy_on_a_layout_that_cannot_apply_it_is_refused(tmp_path):
    from mobiledx.data.intake import IngestError
    from mobiledx.data.manifest import LabelPolicy, ScanOptions

    folder = tmp_path / "folder" / "benign"
    folder.mkdir(parents=True)
    solid_image((10, 20, 30)).save(folder / "a.jpg")
    with pytest.raises(IngestError, match=r"the folder layout takes its classes .*Fix: remove labels .*isic2019"):
        ingest(tmp_path / "folder", "folder", 8, tmp_path / "images.npy", workers=1,
               options=ScanOptions(labels=LabelPolicy(map={"benign": "nevus"})))

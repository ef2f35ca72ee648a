import shutil

import pandas as pd
import pytest

from mobiledx.data.adapters import get_adapter, known_kinds, scan_cnmc, scan_ham10000
from mobiledx.data.adapters.registry import DatasetLayoutError
from tests.support import ham_rows, solid_image, write_ham10000


def reasons(scan) -> dict[str, str]:
    return dict(zip(scan.quarantine["image_id"], scan.quarantine["reason"]))


def test_registry_knows_both_layouts_and_names_unknown_kinds():
    assert {"ham10000", "cnmc", "isic_archive", "isic2019", "isic2020"} <= set(known_kinds())
    with pytest.raises(DatasetLayoutError, match=r"unknown dataset kind 'dicom-archive'. Fix: .* one of .*ham10000"):
        get_adapter("dicom-archive")


def test_ham10000_distributed_layout(ham_dir):
    scan = scan_ham10000(ham_dir)
    assert scan.quarantine.empty
    assert len(scan.records) == 42 and scan.classes == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    records = scan.records.set_index("image_id")
    assert {p.split("/")[0] for p in records["path"]} == {"HAM10000_images_part_1", "HAM10000_images_part_2"}
    assert records["lesion_id"].nunique() == 21 and set(records["patient_id"]) == {""}  # two images per lesion
    first = scan.records.iloc[0]
    assert first["age"] == ""  # raw text: converted exactly by ingest (mobiledx.data.fields), never coerced here
    assert scan.records.iloc[1]["age"] == "40.0"
    assert scan.records.iloc[2]["sex"] == "unknown"


@pytest.mark.parametrize("folders", [("ham10000_images_part_1", "ham10000_images_part_2"), ("HAM10000_images",)])
def test_ham10000_folder_variants(tmp_path, folders):
    scan = scan_ham10000(write_ham10000(tmp_path / "ham", ham_rows(1), folders=folders))
    assert len(scan.records) == 14 and scan.quarantine.empty


def test_ham10000_class_subfolders_and_extra_columns(tmp_path):
    rows = ham_rows(1)
    for row in rows:
        row["dataset"] = "vidir_modern"
    root = write_ham10000(tmp_path / "ham", rows, folders=("tmp",))
    for row in rows:  # move images into class folders
        (root / row["dx"]).mkdir(exist_ok=True)
        shutil.move(root / "tmp" / f"{row['image_id']}.jpg", root / row["dx"] / f"{row['image_id']}.jpg")
    scan = scan_ham10000(root)
    assert len(scan.records) == 14 and scan.quarantine.empty
    assert all(path.startswith(label + "/") for path, label in zip(scan.records["path"], scan.records["label"]))


def test_ham10000_bad_inputs_are_quarantined_with_reasons(tmp_path):
    rows = ham_rows(1)
    rows[3]["dx"] = "melanoma?"
    root = write_ham10000(tmp_path / "ham", rows)
    (root / "HAM10000_images_part_1" / f"{rows[4]['image_id']}.jpg").unlink()
    solid_image((1, 2, 3)).save(root / "HAM10000_images_part_2" / "ISIC_9999999.jpg")
    scan = scan_ham10000(root)
    why = reasons(scan)
    assert "not in the HAM10000 vocabulary" in why[rows[3]["image_id"]]
    assert "no file found" in why[rows[4]["image_id"]]
    assert why["ISIC_9999999"] == "image file not listed in HAM10000_metadata.csv"
    assert len(scan.records) + 2 == len(rows)  # every metadata row is either a record or quarantined


def test_ham10000_missing_metadata_or_columns_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="no HAM10000_metadata.csv found. Fix: check"):
        scan_ham10000(tmp_path / "empty")
    root = write_ham10000(tmp_path / "ham", ham_rows(1))
    pd.read_csv(root / "HAM10000_metadata.csv").drop(columns="lesion_id").to_csv(root / "HAM10000_metadata.csv")
    with pytest.raises(DatasetLayoutError, match=r"missing required column\(s\) \['lesion_id'\]"):
        scan_ham10000(root)


def test_path_escaping_the_root_is_quarantined(tmp_path, ham_dir):
    outside = tmp_path / "secret.jpg"
    solid_image((9, 9, 9)).save(outside)
    (ham_dir / "HAM10000_images_part_1" / "ISIC_0000001.jpg").symlink_to(outside)
    assert "outside the dataset root" in reasons(scan_ham10000(ham_dir))["ISIC_0000001"]


def test_metadata_cannot_point_outside_the_data_root(tmp_path):
    """Ids in a metadata/labels CSV only select files found INSIDE the root; `../` never reaches a file."""
    rows = ham_rows(1)
    root = write_ham10000(tmp_path / "ham", rows)
    solid_image((1, 2, 3)).save(tmp_path / "secret.jpg")  # beside the root, one `..` away
    metadata = pd.read_csv(root / "HAM10000_metadata.csv", dtype=str, keep_default_na=False)
    metadata.loc[0, "image_id"] = "../secret"
    metadata.loc[1, "image_id"] = str(tmp_path / "secret")
    metadata.to_csv(root / "HAM10000_metadata.csv", index=False)
    scan = scan_ham10000(root)
    assert "no file found" in reasons(scan)["../secret"] and "no file found" in reasons(scan)[str(tmp_path / "secret")]
    assert not scan.records["path"].str.contains("secret").any()
    assert all(not p.startswith("/") and ".." not in p.split("/") for p in scan.records["path"])


def test_linked_folder_escaping_the_root_is_refused_with_the_fix(tmp_path, ham_dir):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    solid_image((9, 9, 9)).save(outside / "ISIC_0000002.jpg")
    (ham_dir / "HAM10000_images_part_1" / "linked").symlink_to(outside, target_is_directory=True)
    message = r"part_1/linked is a symbolic link to .*elsewhere, outside the registered dataset folder .*Fix: copy"
    with pytest.raises(DatasetLayoutError, match=message):
        scan_ham10000(ham_dir)


def test_cnmc_labels_csv_cannot_point_outside_the_root(tmp_path, cnmc_dir):
    solid_image((5, 5, 5), (8, 8)).save(tmp_path / "secret.bmp")
    labels = cnmc_dir / "test_labels.csv"
    labels.write_text("Patient_ID,new_names,labels\nUID_7_1_1_all,../../secret.bmp,1\n")
    scan = scan_cnmc(cnmc_dir)
    assert "secret" not in set(scan.records["image_id"])
    assert "no file found" in reasons(scan)["secret"]


def test_cnmc_subjects_labels_and_folds(cnmc_dir):
    scan = scan_cnmc(cnmc_dir)
    assert scan.quarantine.empty and scan.classes == ["all", "hem"]
    assert len(scan.records) == 18
    hem = scan.records[scan.records["label"] == "hem"]
    assert set(hem["patient_id"]) == {"subject_2", "subject_4"}  # H prefix stripped; subjects are the patients
    assert scan.records.groupby("patient_id")["label"].nunique().max() == 1
    assert set(scan.records["age"]) == {""} and set(scan.records["sex"]) == {"unknown"}


def test_cnmc_misfiled_and_misnamed_files_are_quarantined(cnmc_dir):
    fold = cnmc_dir / "training_data" / "fold_0"
    (fold / "hem").mkdir(exist_ok=True)
    solid_image((0, 0, 0), (8, 8)).save(fold / "hem" / "UID_99_1_1_all.bmp")
    solid_image((0, 0, 0), (8, 8)).save(fold / "all" / "cell_0001.bmp")
    why = reasons(scan_cnmc(cnmc_dir))
    assert "folder says 'hem'" in why["UID_99_1_1_all"]
    assert "does not follow" in why["cell_0001"]

"""Each layout's own rules, value by value: ISIC 2020's targets and duplicates list, the Archive's and ISIC 2019's
labels, C-NMC's test labels, which HAM10000 archive a partial download lacks, and class folders."""

import pandas as pd
import pytest

from mobiledx.data.adapters import (
    scan_class_folders,
    scan_cnmc,
    scan_isic,
    scan_isic2019,
    scan_isic2020,
    scan_isic_archive,
)
from mobiledx.data.adapters.ham10000 import _missing_part_hint
from mobiledx.data.adapters.registry import DatasetLayoutError
from mobiledx.data.manifest import RECORD_COLUMNS, ScanOptions
from mobiledx.params import LabelPolicy
from tests.support import archive_rows, solid_image, write_cnmc, write_isic2019, write_isic2020, write_isic_archive

BINARY = LabelPolicy(map={"Benign": "benign", "Malignant": "malignant"})


def quarantined(scan) -> list[tuple[str, str, str]]:
    return list(scan.quarantine.itertuples(index=False, name=None))


# --- ISIC 2020 ---------------------------------------------------------------------------------------------------


def test_isic2020_in_a_nested_folder_refuses_unreadable_targets_and_each_set_of_listed_duplicates(tmp_path):
    rows = [("ISIC_0000001", "IP_1", "unknown", "0"), ("ISIC_0000002", "IP_1", "unknown", "0"),
            ("ISIC_0000003", "IP_2", "unknown", "0"), ("ISIC_0000004", "IP_2", "unknown", "1"),
            ("ISIC_0000005", "IP_2", "unknown", "0"), ("ISIC_0000006", "IP_3", "unknown", "2"),
            ("ISIC_0000007", "IP_3", "unknown", "0.5"), ("ISIC_0000008", "IP_3", "unknown", "0"),
            ("ISIC_0000009", "IP_4", "unknown", "1")]
    pairs = [("ISIC_0000001", "ISIC_0000002"), ("ISIC_0000003", "ISIC_0000004"), ("ISIC_0000004", "ISIC_0000005"),
             ("ISIC_0000008", ""), ("ISIC_0000009", " ")]  # a pair with one side empty links nothing
    write_isic2020(tmp_path / "raw" / "download" / "2020", rows, duplicates=pairs)
    scan = scan_isic2020(tmp_path / "raw")
    folder = "download/2020/jpeg/train"
    listed = "(ISIC_2020_Training_Duplicates.csv), labelled benign and malignant"
    assert sorted(quarantined(scan)) == [
        ("ISIC_0000002", f"{folder}/ISIC_0000002.jpg",
         "the same image as ISIC_0000001 (ISIC_2020_Training_Duplicates.csv)"),
        ("ISIC_0000003", f"{folder}/ISIC_0000003.jpg", f"the same image as ISIC_0000004, ISIC_0000005 {listed}"),
        ("ISIC_0000004", f"{folder}/ISIC_0000004.jpg", f"the same image as ISIC_0000003, ISIC_0000005 {listed}"),
        ("ISIC_0000005", f"{folder}/ISIC_0000005.jpg", f"the same image as ISIC_0000003, ISIC_0000004 {listed}"),
        ("ISIC_0000006", f"{folder}/ISIC_0000006.jpg", "target '2' in train.csv is not 0 or 1"),
        ("ISIC_0000007", f"{folder}/ISIC_0000007.jpg", "target '0.5' in train.csv is not 0 or 1")]
    assert dict(zip(scan.records["image_id"], scan.records["label"])) == {
        "ISIC_0000001": "benign", "ISIC_0000008": "benign", "ISIC_0000009": "malignant"}


@pytest.mark.parametrize("columns", [["target", "benign_malignant", "diagnosis"], ["target", "diagnosis"]])
def test_isic2020_columns_that_disagree_are_named_with_their_values(tmp_path, columns):
    root = write_isic2020(tmp_path / "isic2020", [("ISIC_0000010", "IP_1", "melanoma", "0"),
                                                  ("ISIC_0000011", "IP_1", "nevus", "0")])
    table = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    table.drop(columns=[c for c in ("benign_malignant",) if c not in columns]).to_csv(root / "train.csv", index=False)
    said = {"target": "target 'benign' (benign)", "benign_malignant": "benign_malignant 'benign' (benign)",
            "diagnosis": "diagnosis 'melanoma' (malignant)"}
    assert quarantined(scan_isic2020(root)) == [
        ("ISIC_0000010", "jpeg/train/ISIC_0000010.jpg", f"its row in train.csv contradicts itself: "
         f"{', '.join(said[c] for c in columns)}. Which is right is unknown")]


def test_a_duplicates_list_without_its_columns_is_named_as_such(tmp_path):
    root = write_isic2020(tmp_path / "isic2020", [("ISIC_0000010", "IP_1", "nevus", "0")])
    (root / "ISIC_2020_Training_Duplicates.csv").write_text("image_name_1\nISIC_0000010\n")
    with pytest.raises(DatasetLayoutError, match=r"Duplicates.csv: missing required column\(s\) \['image_name_2'\] of "
                                                 r"the duplicates list; found \['image_name_1'\]"):
        scan_isic2020(root)


# --- ISIC Archive and ISIC 2019 ------------------------------------------------------------------------------------


def test_archive_diagnosis_levels_that_contradict_the_first_are_refused_naming_each_level(tmp_path):
    rows = archive_rows(3, 1, 1)  # a Benign, a Malignant and an Indeterminate image
    for row in rows:
        del row["anatom_site_1"]  # a download without the site fields
    indeterminate = ("ISIC_0000002", "ISIC_0000002.jpg", "diagnosis_1 'Indeterminate' is not in "
                                                         "datasets.<name>.labels.map")
    scan = scan_isic_archive(write_isic_archive(tmp_path / "agreeing", rows), ScanOptions(labels=BINARY))
    assert quarantined(scan) == [indeterminate] and scan.records["site"].tolist() == ["", ""]
    rows[0]["diagnosis_3"] = "Melanoma, NOS"
    rows[1]["diagnosis_3"] = "Nevus"
    scan = scan_isic_archive(write_isic_archive(tmp_path / "archive", rows), ScanOptions(labels=BINARY))
    assert quarantined(scan) == [
        ("ISIC_0000000", "ISIC_0000000.jpg", "its row in metadata.csv contradicts itself: diagnosis_1 'Benign' "
         "(benign), diagnosis_2 'Benign melanocytic proliferations' (benign), diagnosis_3 'Melanoma, NOS' "
         "(malignant). Which is right is unknown"),
        ("ISIC_0000001", "ISIC_0000001.jpg", "its row in metadata.csv contradicts itself: diagnosis_1 'Malignant' "
         "(malignant), diagnosis_2 'Malignant melanocytic proliferations (Melanoma)' (malignant), diagnosis_3 "
         "'Nevus' (benign). Which is right is unknown"), indeterminate]


def test_isic2019_a_row_marking_no_class_is_a_missing_label(tmp_path):
    root = write_isic2019(tmp_path / "isic2019", [("ISIC_0000000", "", "", "50", "male"),
                                                  ("ISIC_0000001", "NV", "", "50", "male")])
    assert quarantined(scan_isic2019(root)) == [
        ("ISIC_0000000", "ISIC_2019_Training_Input/ISIC_0000000.jpg",
         "ISIC_2019_Training_GroundTruth.csv: not exactly one class marked 1 (one-hot) for this image")]
    other = scan_isic2019(root, ScanOptions(labels=LabelPolicy(missing="other")))
    assert other.quarantine.empty and dict(zip(other.records["image_id"], other.records["label"])) == {
        "ISIC_0000000": "other", "ISIC_0000001": "nv"}


# --- C-NMC ---------------------------------------------------------------------------------------------------------


def test_cnmc_test_labels_that_are_not_a_whole_0_or_1_are_named(tmp_path):
    root = write_cnmc(tmp_path / "cnmc", {"3": "all", "H2": "hem"})
    for name in ("1", "2", "3"):
        solid_image((int(name) * 40, 9, 9), (32, 32)).save(root / f"{name}.bmp")
    (root / "test_labels.csv").write_text("Patient_ID,new_names,labels\nUID_7_1_1_all.bmp,1.bmp,0.5\n"
                                          "UID_7_2_1_all.bmp,2.bmp,x\nUID_8_1_1_hem.bmp,3.bmp,0.0\n")
    scan = scan_cnmc(root)
    assert quarantined(scan) == [("1", "1.bmp", "labels CSV: labels '0.5' is not 1 (ALL) or 0 (HEM)"),
                                 ("2", "2.bmp", "labels CSV: labels 'x' is not 1 (ALL) or 0 (HEM)")]
    test = scan.records[scan.records["source_split"] == "test"]
    assert test[["image_id", "label", "patient_id"]].values.tolist() == [["3", "hem", "subject_8"]]


# --- HAM10000: which archive is missing ----------------------------------------------------------------------------


def _ids(*numbers: int) -> list[str]:
    return [f"ISIC_{number:07d}" for number in numbers]


PART = "They are the ids of the release's archive HAM10000_images_part_{0}: download and extract " \
       "HAM10000_images_part_{0}.zip there."


@pytest.mark.parametrize(("missing", "part"), [
    (_ids(24306), 1),  # the first image of part 1
    (_ids(29305), 1), (_ids(29306), 2),  # the last of part 1, the first of part 2
    (_ids(29310), 2),
    (_ids(34320), 2),  # part 2 holds 15 more: its last image
    (_ids(34321), None),  # beyond the release
    (_ids(*range(24306, 24315), 34400), 1),  # 9 of 10 in part 1: enough
    (_ids(*range(24306, 24314), 34400, 34401), None),  # 8 of 10: not
    (_ids(*range(24306, 24311), *range(29306, 29311)), None),  # half and half
    (["ISIC_0024306_2"], None),  # the number is the id's last part
    (["ISIC_0024306_downsampled"], None),
])
def test_the_missing_archive_is_named_when_nine_of_ten_missing_ids_fall_in_it(missing, part):
    assert _missing_part_hint(missing) == ("" if part is None else PART.format(part))


# --- Class folders --------------------------------------------------------------------------------------------


def test_class_folder_records_carry_their_path_as_id_and_the_layouts_unknown_metadata(tmp_path):
    root = tmp_path / "folders"
    for number, relative in enumerate(["benign/a.v1.png", "benign/a.v2.png", "benign/b.png", "benign/b.jpg",
                                       "malignant.old/c.png"]):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        solid_image((number * 40, 20, 20)).save(root / relative)
    scan = scan_class_folders(root)
    assert quarantined(scan) == [("benign/b", "benign/b.jpg, benign/b.png", "several different files for one image id")]
    assert list(scan.records.columns) == RECORD_COLUMNS
    assert scan.records[["image_id", "path", "label"]].values.tolist() == [
        ["benign/a.v1", "benign/a.v1.png", "benign"], ["benign/a.v2", "benign/a.v2.png", "benign"],
        ["malignant.old/c", "malignant.old/c.png", "malignant.old"]]
    unknown = scan.records[["lesion_id", "patient_id", "age", "sex", "site", "source_split"]]
    assert unknown.values.tolist() == [["", "", "", "unknown", "unknown", ""]] * 3


def test_kaggle_isic_folders_read_as_their_class_are_counted_and_a_class_folder_may_sit_at_the_top(tmp_path):
    root = tmp_path / "isic"
    for number, relative in enumerate(["train/Benign/1.jpg", "train/Benign/2.jpg", "test/malignant/3.jpg",
                                       "benign/4.jpg"]):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        solid_image((number * 40, 90, 20)).save(root / relative)
    scan = scan_isic(root)
    assert scan.quarantine.empty and scan.normalised == {"label: class folder 'Benign' read as 'benign'": 2}
    assert scan.records[["image_id", "label", "source_split"]].values.tolist() == [
        ["benign/4", "benign", ""], ["test/malignant/3", "malignant", "test"], ["train/Benign/1", "benign", "train"],
        ["train/Benign/2", "benign", "train"]]


def test_lookalike_class_folders_are_named_with_every_folder_that_holds_them(tmp_path):
    root = tmp_path / "folders"
    for split, name in (("train", "Nevus"), ("test", "Nevus"), ("val", "nevus"), ("train", "MEL"), ("val", "mel")):
        (root / split / name).mkdir(parents=True)
        solid_image((len(split) * 30, len(name) * 20, 9)).save(root / split / name / f"{name}.png")
    with pytest.raises(DatasetLayoutError) as raised:
        scan_class_folders(root)
    assert str(raised.value) == (
        f"{root}: class folders whose names differ only in letter case, width, invisible characters or lookalike "
        f"letters of another script: 'Nevus' (test/Nevus, train/Nevus/) and 'nevus' (val/nevus/); 'MEL' "
        f"(train/MEL/) and 'mel' (val/mel/). One class or two? Fix: rename the folders so that each class has one "
        f"name, written the same way everywhere")

"""Issue 25: never crash, never relabel silently. Real downloads with their quirks, each in its real layout."""

import shutil
import unicodedata

import numpy as np
import pandas as pd
import pytest

from mobiledx.data.adapters import (
    scan_class_folders,
    scan_cnmc,
    scan_ham10000,
    scan_isic2019,
    scan_isic2020,
    scan_isic_archive,
)
from mobiledx.data.adapters.registry import DatasetLayoutError, MetadataFileError
from mobiledx.data.intake import IngestError, NothingToIngestError, assign_groups, ingest
from mobiledx.data.manifest import ScanOptions
from mobiledx.errors import MobiledxError
from mobiledx.params import LabelPolicy
from tests.support import (
    archive_rows,
    ham_rows,
    solid_image,
    write_cnmc,
    write_ham10000,
    write_isic2019,
    write_isic2020,
    write_isic_archive,
)

BINARY = LabelPolicy(map={"Benign": "benign", "Malignant": "malignant"})


def reasons(scan) -> dict[str, str]:
    return dict(zip(scan.quarantine["image_id"], scan.quarantine["reason"]))


def ignored(scan) -> dict[str, str]:
    return dict(zip(scan.ignored["path"], scan.ignored["reason"]))


def run(root, kind, tmp_path, **options):
    return ingest(root, kind, 8, tmp_path / "out" / "images.npy", workers=1, options=ScanOptions(**options))


def rewrite(path, encoding="utf-8", sep=",", transform=None):
    """A metadata table saved again as people save it: another encoding or delimiter, edited values."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if transform is not None:
        frame = transform(frame)
    frame.to_csv(path, index=False, sep=sep, encoding=encoding)


# --- No traceback when nothing survives -------------------------------------------------------------------------


def _ham_not_extracted(root):
    write_ham10000(root, ham_rows(1))
    for folder in root.glob("HAM10000_images_part_*"):
        shutil.rmtree(folder)
        (root / f"{folder.name}.zip").write_bytes(b"PK\x03\x04")
    return root, {}


def _ham_map_differs_by_case(root):
    write_ham10000(root, ham_rows(1))
    return root, {"labels": LabelPolicy(map={code.upper(): code for code in ("akiec", "bcc", "bkl", "df", "mel",
                                                                             "nv", "vasc")})}


def _archive_not_downloaded(root):
    write_isic_archive(root, archive_rows())
    for image in root.glob("*.jpg"):
        image.unlink()
    return root, {"labels": BINARY}


def _isic2019_all_multi_hot(root):
    return write_isic2019(root, [(f"ISIC_{i:07d}", "MEL+NV", "", "50", "male") for i in range(4)]), {}


def _isic2020_dicom_only(root):
    write_isic2020(root, [(f"ISIC_{i:07d}", f"IP_{i % 2}", "nevus", "0") for i in range(4)])
    for image in (root / "jpeg" / "train").glob("*.jpg"):
        image.rename(image.with_suffix(".dcm"))
    return root, {}


def _kaggle_isic_misnamed_folders(root):
    for split in ("train", "test"):
        (root / split / "melanoma").mkdir(parents=True)
        solid_image((1, 2, 3)).save(root / split / "melanoma" / "1.jpg")
    return root, {}


def _cnmc_renamed(root):
    write_cnmc(root, {"3": "all", "H2": "hem"})
    for image in root.rglob("*.bmp"):
        image.rename(image.with_name(f"copy of {image.name}"))
    return root, {}


def _folder_of_dicoms(root):
    for label in ("benign", "malignant"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            (root / label / f"{i}.dcm").write_bytes(b"\0" * 128 + b"DICM")
    return root, {}


def _medmnist_labels_out_of_range(root):
    root.mkdir(parents=True)
    np.savez(root / "dermamnist.npz", train_images=np.zeros((3, 28, 28, 3), np.uint8),
             train_labels=np.full((3, 1), 9))
    return root, {}


NOTHING_SURVIVES = {
    "ham10000": (_ham_not_extracted, "image listed in HAM10000_metadata.csv but no file found",
                 "extract HAM10000_images_part_1.zip there"),
    "ham10000-map": (_ham_map_differs_by_case, "its key 'AKIEC' differs only in letter case",
                     "write the keys of datasets.<name>.labels.map exactly as the values are written"),
    "isic_archive": (_archive_not_downloaded, "image listed in metadata.csv but no file found",
                     "Re-run `isic image download`"),
    "isic2019": (_isic2019_all_multi_hot, "not exactly one class marked 1", "Fix: "),
    "isic2020": (_isic2020_dicom_only, "not an image file (.dcm)", "DICOM files are not read"),
    "isic": (_kaggle_isic_misnamed_folders, "class folder 'melanoma' not in the vocabulary",
             "put each image in a folder named after its class"),
    "cnmc": (_cnmc_renamed, "file name does not follow", "keep the C-NMC files with their distributed names"),
    "folder": (_folder_of_dicoms, "6 × not an image file (.dcm)", "convert the DICOM files"),
    "medmnist": (_medmnist_labels_out_of_range, "3 × label 9 outside 0..6", "Fix: "),
}


@pytest.mark.parametrize("case", sorted(NOTHING_SURVIVES))
def test_when_nothing_survives_ingest_says_why_and_the_fix_in_one_message(tmp_path, case):
    write, reason, fix = NOTHING_SURVIVES[case]
    root, options = write(tmp_path / case)
    with pytest.raises(NothingToIngestError) as raised:
        run(root, case.split("-")[0], tmp_path, **options)
    message = str(raised.value)
    assert isinstance(raised.value, MobiledxError)  # printed by run_stage as one line, no traceback
    assert "nothing is left to ingest" in message and "Most common reasons: " in message
    assert reason in message and fix in message and "Fix: " in message
    assert len(raised.value.quarantine) > 0 and raised.value.quarantine["reason"].str.len().min() > 0


def test_an_empty_folder_is_one_message_too(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NothingToIngestError, match="no image found.*Fix: check that datasets.<name>.path"):
        run(tmp_path / "empty", "folder", tmp_path)


def test_nothing_surviving_decoding_is_one_message(tmp_path):
    root = write_ham10000(tmp_path / "ham", ham_rows(1))
    for image in root.rglob("*.jpg"):
        image.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(NothingToIngestError, match=r"14 × unreadable.*Fix: replace the unreadable files"):
        run(root, "ham10000", tmp_path)
    assert list((tmp_path / "out").iterdir()) == []  # no empty cache, no table left behind


def test_grouping_an_empty_table_does_not_crash():
    empty = pd.DataFrame({c: pd.Series(dtype=float) for c in ("image_id", "lesion_id", "patient_id")})
    groups, sentence = assign_groups(empty, "auto")
    assert groups.empty and sentence == "grouped by image (0 images)"


# --- Two sources of one label that disagree ------------------------------------------------------------------


def test_isic2020_melanoma_marked_benign_is_refused_with_both_values(tmp_path):
    rows = [("ISIC_0000010", "IP_1", "melanoma", "0"), ("ISIC_0000011", "IP_1", "melanoma", "1"),
            ("ISIC_0000012", "IP_2", "nevus", "1"), ("ISIC_0000013", "IP_2", "unknown", "1")]
    root = write_isic2020(tmp_path / "isic2020", rows)
    for policy in (LabelPolicy(), LabelPolicy(column="diagnosis", map={"melanoma": "mel", "nevus": "nv"},
                                              unmapped="other")):
        scan = scan_isic2020(root, ScanOptions(labels=policy))
        why = reasons(scan)
        assert "target 'benign' (benign)" in why["ISIC_0000010"] and "diagnosis 'melanoma' (malignant)" in why[
            "ISIC_0000010"] and "Which is right is unknown" in why["ISIC_0000010"]
        assert "diagnosis 'nevus' (benign)" in why["ISIC_0000012"]
        assert set(scan.records["image_id"]) == {"ISIC_0000011", "ISIC_0000013"}  # "unknown" says nothing


def test_isic2020_benign_malignant_column_disagreeing_with_target_is_refused(tmp_path):
    root = write_isic2020(tmp_path / "isic2020", [("ISIC_0000010", "IP_1", "unknown", "0"),
                                                  ("ISIC_0000011", "IP_1", "unknown", "1")])
    rewrite(root / "train.csv", transform=lambda f: f.assign(benign_malignant=["malignant", "malignant"]))
    scan = scan_isic2020(root)
    assert "benign_malignant 'malignant' (malignant)" in reasons(scan)["ISIC_0000010"]
    assert list(scan.records["image_id"]) == ["ISIC_0000011"]


def test_archive_download_whose_old_and_new_columns_disagree_is_refused(tmp_path):
    rows = archive_rows(3, 1, 1)  # Benign, Malignant, Indeterminate
    for row, old in zip(rows, ("malignant", "malignant", "benign"), strict=True):
        row["benign_malignant"] = old
    root = write_isic_archive(tmp_path / "archive", rows)
    scan = scan_isic_archive(root, ScanOptions(labels=BINARY))
    why = reasons(scan)[rows[0]["isic_id"]]
    assert "diagnosis_1 'Benign' (benign)" in why and "benign_malignant 'malignant' (malignant)" in why
    assert list(scan.records["image_id"]) == [rows[1]["isic_id"]]


def test_one_lesion_with_two_diagnoses_is_refused_naming_both(tmp_path):
    rows = ham_rows(1)
    rows[1]["dx"] = "nv"  # the second image of the first akiec lesion
    root = write_ham10000(tmp_path / "ham", rows)
    result = run(root, "ham10000", tmp_path)
    why = dict(zip(result.quarantine["image_id"], result.quarantine["reason"]))
    expected = (f"lesion {rows[0]['lesion_id']} is labelled 'akiec' ({rows[0]['image_id']}) and 'nv' "
                f"({rows[1]['image_id']}) across its images: which is right is unknown")
    assert why == {rows[0]["image_id"]: expected, rows[1]["image_id"]: expected}
    assert len(result.manifest) == len(rows) - 2


def test_isic2019_row_marking_two_classes_is_never_a_missing_label(tmp_path):
    root = write_isic2019(tmp_path / "isic2019", [("ISIC_0000000", "MEL+NV", "", "50", "male"),
                                                  ("ISIC_0000001", "NV", "", "50", "male")])
    scan = scan_isic2019(root, ScanOptions(labels=LabelPolicy(missing="other")))
    assert "not exactly one class marked 1" in reasons(scan)["ISIC_0000000"]
    assert list(scan.records["label"]) == ["nv"]


def test_duplicates_listed_with_different_labels_are_all_refused(tmp_path):
    rows = [("ISIC_0000010", "IP_1", "nevus", "0"), ("ISIC_0000011", "IP_1", "unknown", "0"),
            ("ISIC_0000012", "IP_2", "unknown", "1")]
    root = write_isic2020(tmp_path / "isic2020", rows, duplicates=[("ISIC_0000011", "ISIC_0000012")])
    why = reasons(scan_isic2020(root))
    assert why["ISIC_0000011"] == ("the same image as ISIC_0000012 (ISIC_2020_Training_Duplicates.csv), labelled "
                                   "benign and malignant")
    assert why["ISIC_0000012"].startswith("the same image as ISIC_0000011")


# --- Quarantine reasons are true -----------------------------------------------------------------------------


def test_an_unreadable_target_is_reported_with_its_value_never_as_missing(tmp_path):
    root = write_isic2020(tmp_path / "isic2020", [("ISIC_0000010", "IP_1", "unknown", "0"),
                                                  ("ISIC_0000011", "IP_1", "unknown", "1"),
                                                  ("ISIC_0000012", "IP_2", "unknown", "1")])
    rewrite(root / "train.csv", transform=lambda f: f.assign(target=["yes", "1.0", ""]))
    scan = scan_isic2020(root, ScanOptions(labels=LabelPolicy(missing="other")))
    assert reasons(scan) == {"ISIC_0000010": "target 'yes' in train.csv is not 0 or 1"}
    assert dict(zip(scan.records["image_id"], scan.records["label"])) == {"ISIC_0000011": "malignant",
                                                                          "ISIC_0000012": "other"}
    assert "target_label" not in str(reasons(scan_isic2020(root)))  # an internal name never reaches the user


def test_an_unreadable_one_hot_value_is_named(tmp_path):
    root = write_isic2019(tmp_path / "isic2019", [("ISIC_0000000", "MEL", "", "50", "male")])
    rewrite(root / "ISIC_2019_Training_GroundTruth.csv", transform=lambda f: f.assign(NV="x", BCC=""))
    assert reasons(scan_isic2019(root)) == {"ISIC_0000000": "ISIC_2019_Training_GroundTruth.csv: NV 'x' is not a "
                                                            "number, BCC is empty: the one-hot row cannot be read"}


def test_cnmc_test_label_that_is_not_0_or_1_is_named(tmp_path):
    root = write_cnmc(tmp_path / "cnmc", {"3": "all", "H2": "hem"})
    solid_image((9, 9, 9), (32, 32)).save(root / "1.bmp")
    (root / "test_labels.csv").write_text("Patient_ID,new_names,labels\nUID_7_1_1_all.bmp,1.bmp,2\n")
    assert reasons(scan_cnmc(root))["1"] == "labels CSV: labels '2' is not 1 (ALL) or 0 (HEM)"


def test_isic2019_metadata_listing_an_image_twice_names_the_metadata_file(tmp_path):
    root = write_isic2019(tmp_path / "isic2019", [("ISIC_0000000", "MEL", "", "50", "male"),
                                                  ("ISIC_0000001", "NV", "", "50", "male")])
    rewrite(root / "ISIC_2019_Training_Metadata.csv", transform=lambda f: pd.concat([f, f.iloc[:1]]))
    assert reasons(scan_isic2019(root)) == {"ISIC_0000000": "image id listed 2 times in "
                                                            "ISIC_2019_Training_Metadata.csv: which row describes it "
                                                            "is unknown"}


# --- Names are compared as a person reads them ---------------------------------------------------------------


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def test_a_class_folder_typed_in_two_unicode_forms_is_one_class(tmp_path):
    root = tmp_path / "folders"
    for split, name in (("train", "Mélanome"), ("test", nfd("Mélanome")), ("train", "Nævus"), ("test", "Nævus")):
        (root / split / name).mkdir(parents=True, exist_ok=True)
        for i in range(2):
            solid_image((len(name) * 9 + i, 40 * (split == "test"), 90)).save(root / split / name / f"{i}.png")
    scan = scan_class_folders(root)
    assert scan.classes == ["Mélanome", "Nævus"] and set(scan.records["label"]) == {"Mélanome", "Nævus"}
    assert scan.normalised == {"label: class folder name Unicode-normalised (NFC)": 2}


@pytest.mark.parametrize("other", ["nevus", "Ne\u200bvus", "Ｎevus", "N\u0435vus", "\u039devus"])
def test_class_folders_a_reader_cannot_tell_apart_are_a_clear_error(tmp_path, other):
    root = tmp_path / "folders"
    for split, name in (("train", "Nevus"), ("test", other)):
        (root / split / name).mkdir(parents=True)
        solid_image((len(split), 2, 3)).save(root / split / name / "1.png")
    with pytest.raises(DatasetLayoutError, match=r"class folders whose names differ only .*'Nevus' \(train/Nevus/\)"
                                                 r".*One class or two\? Fix: rename"):
        scan_class_folders(root)


def test_ids_and_labels_in_another_unicode_form_than_the_files_and_the_map(tmp_path):
    rows = archive_rows(2, 1, 2)
    for row in rows:  # the metadata decomposed (NFD), the map typed composed (NFC)
        row["diagnosis_3"] = nfd("Café-au-lait macule") if row["diagnosis_1"] == "Benign" else "Melanoma, NOS"
    rows[0]["isic_id"] = "ISIC_0000000_é"  # listed composed ...
    root = write_isic_archive(tmp_path / "archive", rows)
    (root / "ISIC_0000000_é.jpg").rename(root / f"{nfd('ISIC_0000000_é')}.jpg")  # ... the file named by macOS
    scan = scan_isic_archive(root, ScanOptions(labels=LabelPolicy(column="diagnosis_3", map={
        "Café-au-lait macule": "benign", "Melanoma, NOS": "malignant"})))
    assert scan.quarantine.empty, reasons(scan)
    assert sorted(scan.records["label"]) == ["benign"] * 2 + ["malignant"] * 2
    assert "ISIC_0000000_é" in set(scan.records["image_id"])
    assert scan.normalised["metadata: values Unicode-normalised (NFC)"] == 2


@pytest.mark.parametrize("other, shown", [("benign", "'benign'"),
                                           ("\u0412\u0435nign", r"'Веnign' \(\\u0412\\u0435nign\)")])
def test_label_values_a_reader_cannot_tell_apart_are_a_clear_error(tmp_path, other, shown):
    rows = archive_rows(3, 2, 1)  # Benign, Malignant, Malignant, Benign, Benign, Indeterminate
    rows[0]["diagnosis_1"] = other  # typed in another case, or with Cyrillic В and е (a Russian keyboard layout)
    root = write_isic_archive(tmp_path / "archive", rows)
    with pytest.raises(IngestError, match=r"labels that differ only in letter case.*'Benign' \(2 image\(s\)\) and "
                                          + shown + r" \(1 image\(s\)\).*Fix: send them to one class"):
        run(root, "isic_archive", tmp_path)


# --- Metadata files as people really have them ---------------------------------------------------------------

ATTRIBUTION = "Hospital Clínic de Barcelona"


def _archive_with_accents(tmp_path):
    rows = archive_rows(2, 1, 1)
    rows[0]["attribution"] = ATTRIBUTION
    return write_isic_archive(tmp_path / "archive", rows), rows


@pytest.mark.parametrize(("encoding", "sep", "normalised"), [
    ("utf-8-sig", ",", "metadata: metadata.csv read as UTF-8 with a byte-order mark"),
    ("utf-16", "\t", "metadata: metadata.csv read as UTF-16 (Excel's 'Unicode Text')"),
    ("utf-8", ";", "metadata: metadata.csv read with semicolons as delimiter"),
    ("cp1252", ";", "metadata: metadata.csv read with semicolons as delimiter"),
])
def test_metadata_saved_by_excel_is_read_correctly(tmp_path, encoding, sep, normalised):
    root, rows = _archive_with_accents(tmp_path)
    rewrite(root / "metadata.csv", encoding=encoding, sep=sep)
    scan = scan_isic_archive(root)
    assert scan.quarantine.empty and len(scan.records) == len(rows)
    assert scan.records.set_index("image_id").loc[rows[0]["isic_id"], "attribution"] == ATTRIBUTION
    assert scan.normalised[normalised] == 1
    assert any("read as Windows-1252" in note for note in scan.notes) == (encoding == "cp1252")


@pytest.mark.parametrize(("content", "problem"), [
    (b"PK\x03\x04 workbook", "is a zip archive \\(an Excel .xlsx workbook\\?\\).*Fix: open it in Excel"),
    (b"\xd0\xcf\x11\xe0 old workbook", "is an old Excel .xls workbook.*Fix: open it in Excel"),
    (b"isic_id,diagnosis_1\nISIC_0000000,B\x81nign\n", "is not UTF-8 \\(byte 0x81 on line 2\\) nor Windows-1252.*Fix"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "holds binary data.*Fix"),
])
def test_metadata_that_cannot_be_read_is_refused_naming_the_file_the_problem_and_the_fix(tmp_path, content,
                                                                                          problem):
    root, _ = _archive_with_accents(tmp_path)
    (root / "metadata.csv").write_bytes(content)
    with pytest.raises(MetadataFileError, match=f"metadata.csv {problem}"):
        scan_isic_archive(root)


def test_headers_with_other_case_or_spaces_are_read_and_counted(tmp_path):
    root = write_ham10000(tmp_path / "ham", ham_rows(1))
    text = (root / "HAM10000_metadata.csv").read_text()
    (root / "HAM10000_metadata.csv").write_text(text.replace("image_id", " Image_ID ", 1))
    scan = scan_ham10000(root)
    assert scan.quarantine.empty and scan.normalised["metadata: column 'Image_ID' read as 'image_id'"] == 1


# --- The blast radius fits the fault -------------------------------------------------------------------------


def test_one_out_of_range_age_quarantines_its_row_only(tmp_path):
    rows = ham_rows(1)
    rows[3]["age"] = "200.0"
    rows[4]["age"] = "45,5"  # a decimal comma, from a spreadsheet: read, and counted
    result = run(write_ham10000(tmp_path / "ham", rows), "ham10000", tmp_path)
    assert dict(zip(result.quarantine["image_id"], result.quarantine["reason"])) == {
        rows[3]["image_id"]: "age '200.0' is outside 0-120 years"}
    assert result.manifest.set_index("image_id").loc[rows[4]["image_id"], "age"] == 45.5
    assert result.normalised["age: decimal comma read as a decimal point"] == 1


def test_one_malformed_row_quarantines_that_row_with_its_file(tmp_path):
    rows = ham_rows(1)
    root = write_ham10000(tmp_path / "ham", rows)
    lines = (root / "HAM10000_metadata.csv").read_text().splitlines()
    lines[3] = lines[3].replace("back", "back, lower")  # an unquoted comma: one value too many
    (root / "HAM10000_metadata.csv").write_text("\n".join(lines) + "\n")
    scan = scan_ham10000(root)
    assert list(scan.quarantine["image_id"]) == [rows[2]["image_id"]]
    assert scan.quarantine["path"].iloc[0].endswith(f"{rows[2]['image_id']}.jpg")
    assert scan.quarantine["reason"].iloc[0] == ("HAM10000_metadata.csv line 4 has 8 values where its header has 7 "
                                                 "(a value holding an unquoted comma?): the row cannot be read")
    assert len(scan.records) == len(rows) - 1


def test_a_kaggle_mirror_duplicated_folder_is_one_note_naming_both_folders(tmp_path):
    rows = ham_rows(1)
    root = write_ham10000(tmp_path / "ham", rows)
    for folder in list(root.glob("HAM10000_images_part_*")):
        shutil.copytree(folder, root / folder.name.lower())
    scan = scan_ham10000(root)
    assert scan.quarantine.empty and len(scan.records) == len(rows)
    assert scan.notes == [f"ham10000_images_part_{n}/ holds identical copies of 7 image(s) of "
                          f"HAM10000_images_part_{n}/ (a duplicated folder, as in Kaggle's HAM10000 mirror): each is "
                          f"read once, from HAM10000_images_part_{n}/; the copies are listed as ignored"
                          for n in (1, 2)]
    copies = {path: why for path, why in ignored(scan).items() if path.startswith("ham10000_images")}
    assert len(copies) == len(rows) and all(why.startswith("identical copy of HAM10000_images_part_") for why in
                                            copies.values())


def test_duplicated_folders_with_different_files_are_named_once_and_refused(tmp_path):
    rows = ham_rows(1)
    root = write_ham10000(tmp_path / "ham", rows)
    part = root / "HAM10000_images_part_1"
    shutil.copytree(part, root / "old_copy")
    for i, image in enumerate(sorted((root / "old_copy").iterdir())):
        solid_image((200, i, 7)).save(image)  # same names, other pixels
    scan = scan_ham10000(root)
    assert scan.notes == ["HAM10000_images_part_1/ and old_copy/ hold 7 different file(s) under the same image "
                          "names: which is right is unknown, so those images are quarantined. Fix: keep one of the "
                          "two folders"]
    assert set(reasons(scan).values()) == {"several different files for one image id"}


def test_companion_files_are_ignored_and_listed_not_quarantined(tmp_path):
    root = write_isic_archive(tmp_path / "archive", archive_rows())
    for relative, content in {"Thumbs.db": b"\0", "desktop.ini": b"[.ShellClassInfo]", "._ISIC_0000000.jpg": b"\0",
                              "__MACOSX/._ISIC_0000001.jpg": b"\0", ".DS_Store": b"\0", "hmnist_28_28_RGB.csv": b"1,2",
                              "LICENSE.txt": b"CC", "README.md": b"#", "notes.csv": b"a,b"}.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    result = run(root, "isic_archive", tmp_path, labels=BINARY)
    assert result.quarantine["reason"].tolist() == ["diagnosis_1 'Indeterminate' is not in datasets.<name>.labels.map"]
    listed = dict(zip(result.ignored["path"], result.ignored["reason"]))
    assert set(listed) == {"Thumbs.db", "desktop.ini", "._ISIC_0000000.jpg", "__MACOSX/._ISIC_0000001.jpg",
                           ".DS_Store", "hmnist_28_28_RGB.csv", "LICENSE.txt", "README.md", "notes.csv",
                           "metadata.csv", "attribution.txt", "licenses/CC-0.txt", "licenses/CC-BY-NC.txt"}
    assert listed["metadata.csv"] == "read as the dataset's metadata" and all(listed.values())


def test_a_duplicate_listed_with_an_absent_image_keeps_the_present_one(tmp_path):
    rows = [("ISIC_0000010", "IP_1", "nevus", "0"), ("ISIC_0000011", "IP_1", "unknown", "0"),
            ("ISIC_0000012", "IP_2", "unknown", "0")]
    root = write_isic2020(tmp_path / "isic2020", rows, duplicates=[("ISIC_0000010", "ISIC_0000011"),
                                                                  ("ISIC_0000011", "ISIC_0000012")])
    (root / "jpeg" / "train" / "ISIC_0000010.jpg").unlink()
    scan = scan_isic2020(root)
    assert reasons(scan) == {"ISIC_0000010": "image listed in train.csv but no file found",
                             "ISIC_0000012": "the same image as ISIC_0000011 (ISIC_2020_Training_Duplicates.csv)"}
    assert list(scan.records["image_id"]) == ["ISIC_0000011"]


def test_a_value_missing_its_key_only_by_case_is_never_sent_to_the_unmapped_class(tmp_path):
    rows = archive_rows(2, 1, 1)
    rows[0]["diagnosis_1"] = "BENIGN"
    root = write_isic_archive(tmp_path / "archive", rows)
    scan = scan_isic_archive(root, ScanOptions(labels=LabelPolicy(map={"Benign": "benign"}, unmapped="other")))
    assert reasons(scan) == {rows[0]["isic_id"]: "diagnosis_1 'BENIGN' is not in datasets.<name>.labels.map: its key "
                                                 "'Benign' differs only in letter case, width or lookalike letters "
                                                 "(write the key as 'BENIGN')"}
    assert list(scan.records["label"]) == ["other"]  # Indeterminate: a value the map truly lacks


def test_map_keys_that_read_the_same_but_send_to_two_classes_are_a_clear_error(tmp_path):
    root = write_isic_archive(tmp_path / "archive", archive_rows(2, 1, 1))
    policy = LabelPolicy(column="diagnosis_3", map={"Café": "a", nfd("Café"): "b"})
    with pytest.raises(DatasetLayoutError, match="two keys that read 'Café'.*Fix: keep one of them"):
        scan_isic_archive(root, ScanOptions(labels=policy))

"""The files of a download, each accounted for: companions named with why, links followed or refused, files listed
folder by folder, copies read once and only when identical, and the records every adapter hands over."""

import os

import pandas as pd
import pytest

from mobiledx.data.adapters import get_adapter, known_kinds, scan_class_folders, scan_ham10000
from mobiledx.data.adapters.registry import (
    DatasetLayoutError,
    Quarantine,
    companion_reason,
    dataset_files,
    index_images,
    lookalike_names,
    records_frame,
)
from mobiledx.data.manifest import RECORD_COLUMNS
from tests.support import ham_rows, solid_image, write_ham10000


@pytest.mark.parametrize(("relative", "reason"), [
    ("__MACOSX/photo.jpg", "macOS archive metadata (__MACOSX/), not data"),
    ("images/__MACOSX/photo.jpg", "macOS archive metadata (__MACOSX/), not data"),
    ("images/._photo.jpg", "macOS resource fork (._*), not an image"),
    ("images/.cache/photo.jpg", "inside the hidden folder .cache/"),
    ("a/.b/c/photo.jpg", "inside the hidden folder .b/"),
    (".DS_Store", "hidden file"),
    ("images/Thumbs.db", "Windows thumbnail cache (Thumbs.db)"),
    ("licenses/CC-BY.txt", "licence, attribution or readme text shipped with the data"),
    ("Licences/CC-0.md", "licence, attribution or readme text shipped with the data"),
    ("README", "licence, attribution or readme text shipped with the data"),
    ("hmnist_28_28_RGB.csv", "Kaggle's hmnist_*.csv (the images again as small pixel tables; not read)"),
    ("images/photo.jpg", None), ("licenses/photo.jpg", None), ("notes.csv", None),
])
def test_companion_files_are_named_with_why_they_are_not_data(relative, reason):
    assert companion_reason(relative) == reason


def test_files_are_listed_folder_by_folder_and_the_first_of_identical_copies_by_path_is_read(tmp_path):
    rows = ham_rows(1)
    root = write_ham10000(tmp_path / "ham", rows, folders=("part",))
    (root / "part-old").mkdir()
    first = rows[0]["image_id"]
    (root / "part-old" / f"{first}.jpg").write_bytes((root / "part" / f"{first}.jpg").read_bytes())
    assert dataset_files(root)[:2] == ["HAM10000_metadata.csv", f"part/{first}.jpg"]
    assert dataset_files(root)[-1] == f"part-old/{first}.jpg"  # "part/..." before "part-old/...": folder by folder
    scan = scan_ham10000(root)
    assert scan.records.set_index("image_id").loc[first, "path"] == f"part/{first}.jpg"
    assert scan.ignored.values.tolist() == [["HAM10000_metadata.csv", "read as the dataset's metadata"],
                                            [f"part-old/{first}.jpg", f"identical copy of part/{first}.jpg"]]


def test_copies_of_one_name_are_compared_byte_for_byte_and_ignored_in_path_order(tmp_path):
    for relative, colour in (("a/z.png", 1), ("b/z.png", 1), ("c/m.png", 2), ("d/m.png", 2), ("e/k.png", 3),
                             ("f/k.png", 4), ("a/x.png", 5)):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        solid_image((colour * 50, 10, 10)).save(tmp_path / relative)
    (tmp_path / "a" / "x.tif").write_bytes((tmp_path / "a" / "x.png").read_bytes())  # one name, two extensions
    same_time = os.stat(tmp_path / "e" / "k.png").st_mtime_ns
    os.utime(tmp_path / "f" / "k.png", ns=(same_time, same_time))  # same size, same time, other pixels
    assert os.path.getsize(tmp_path / "e" / "k.png") == os.path.getsize(tmp_path / "f" / "k.png")
    quarantine = Quarantine()
    images = index_images(tmp_path, quarantine, collapse_copies=True)
    assert images.values.tolist() == [["x", "a/x.png"], ["z", "a/z.png"], ["m", "c/m.png"], ["k", "e/k.png"],
                                      ["k", "f/k.png"]]
    assert quarantine.ignored == [{"path": "a/x.tif", "reason": "identical copy of a/x.png"},
                                  {"path": "b/z.png", "reason": "identical copy of a/z.png"},
                                  {"path": "d/m.png", "reason": "identical copy of c/m.png"}]
    assert quarantine.notes == [
        "a/ holds 1 image(s) twice, as identical files under one name with another extension: each is read once; the "
        "copies are listed as ignored",
        "b/ holds identical copies of 1 image(s) of a/ (a duplicated folder, as in Kaggle's HAM10000 mirror): each is "
        "read once, from a/; the copies are listed as ignored",
        "d/ holds identical copies of 1 image(s) of c/ (a duplicated folder, as in Kaggle's HAM10000 mirror): each is "
        "read once, from c/; the copies are listed as ignored",
        "e/ and f/ hold 1 different file(s) under the same image names: which is right is unknown, so those images "
        "are quarantined. Fix: keep one of the two folders"]


def test_copies_in_the_dataset_folder_itself_and_in_a_duplicated_folder_are_each_noted(tmp_path):
    rows = ham_rows(1)
    root = write_ham10000(tmp_path / "ham", rows, folders=(".",))
    first, second = rows[0]["image_id"], rows[1]["image_id"]
    (root / f"{first}.png").write_bytes((root / f"{first}.jpg").read_bytes())
    (root / "copy").mkdir()
    (root / "copy" / f"{second}.jpg").write_bytes((root / f"{second}.jpg").read_bytes())
    scan = scan_ham10000(root)
    assert scan.quarantine.empty and scan.notes == [
        "copy/ holds identical copies of 1 image(s) of the dataset folder (a duplicated folder, as in Kaggle's "
        "HAM10000 mirror): each is read once, from the dataset folder; the copies are listed as ignored",
        "the dataset folder holds 1 image(s) twice, as identical files under one name with another extension: each "
        "is read once; the copies are listed as ignored"]


def test_class_folders_keep_identical_files_of_one_name_as_two_images(tmp_path):
    for label in ("benign", "malignant"):
        (tmp_path / label).mkdir()
        solid_image((9, 9, 9)).save(tmp_path / label / "1.png")  # the same photo in two classes: ingest refuses both
    scan = scan_class_folders(tmp_path)
    assert scan.quarantine.empty and scan.records["image_id"].tolist() == ["benign/1", "malignant/1"]


def test_links_inside_the_dataset_are_followed_and_files_linked_from_outside_are_refused(tmp_path):
    rows = ham_rows(1)
    root = write_ham10000(tmp_path / "ham", rows, folders=("store",))
    os.symlink(root / "store", root / "HAM10000_images_part_1")  # a folder linked in from inside the dataset
    first, second = rows[0]["image_id"], rows[1]["image_id"]
    (root / ".hidden").mkdir()
    os.replace(root / "store" / f"{first}.jpg", root / ".hidden" / "kept.jpg")
    os.symlink(root / ".hidden" / "kept.jpg", root / "store" / f"{first}.jpg")  # a file linked from inside
    solid_image((1, 2, 3)).save(tmp_path / "outside.jpg")
    (root / "store" / f"{second}.jpg").unlink()
    os.symlink(tmp_path / "outside.jpg", root / "store" / f"{second}.jpg")
    os.symlink(tmp_path / "nowhere.jpg", root / "store" / "aaa-dangling.jpg")
    scan = scan_ham10000(root)
    assert scan.records.set_index("image_id").loc[first, "path"] == f"HAM10000_images_part_1/{first}.jpg"
    assert len(scan.records) == 13
    assert (second, f"HAM10000_images_part_1/{second}.jpg", "path resolves outside the dataset root") in list(
        scan.quarantine.itertuples(index=False, name=None))
    assert scan.notes == ["store/ holds identical copies of 13 image(s) of HAM10000_images_part_1/ (a duplicated "
                          "folder, as in Kaggle's HAM10000 mirror): each is read once, from HAM10000_images_part_1/; "
                          "the copies are listed as ignored"]


def test_a_folder_linked_from_outside_is_refused_wherever_it_sits_among_the_folders(tmp_path):
    root = tmp_path / "data"
    for name in "abcdefghij":
        (root / name).mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", root / "linked")
    with pytest.raises(DatasetLayoutError, match=r"linked is a symbolic link to .*elsewhere, outside the registered"):
        dataset_files(root)


def test_names_that_differ_only_in_runs_of_spaces_or_invisible_characters_read_the_same():
    assert lookalike_names(["Nevus x", "Nevus  x", "Ne\u200bvus x", "Mel"]) == [["Nevus  x", "Nevus x",
                                                                                   "Ne\u200bvus x"]]


def test_an_unknown_kind_is_refused_naming_the_known_ones():
    with pytest.raises(DatasetLayoutError) as raised:
        get_adapter("dicom")
    assert str(raised.value) == (f"unknown dataset kind 'dicom'. Fix: set datasets.<name>.kind in params.yaml to one "
                                 f"of {', '.join(known_kinds())}")


def test_records_carry_every_record_column_with_text_where_an_adapter_gave_none():
    frame = records_frame([{"image_id": "a", "path": "a.jpg", "label": "x", "age": "40"}])
    assert list(frame.columns) == RECORD_COLUMNS
    row = frame.iloc[0]
    assert [row[c] for c in ("lesion_id", "patient_id", "source_split", "license", "attribution", "sex", "site")] == \
        [""] * 7
    assert records_frame(pd.DataFrame({"image_id": ["b"], "path": ["b.jpg"], "label": ["y"]}))["sex"].tolist() == [""]

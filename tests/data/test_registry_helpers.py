"""The helpers every adapter shares, value by value: registration, finding the metadata file, reading a table by
the slow path, pairing listings with files, label policies, the partial-download note and the one message given
when nothing survives."""

import unicodedata

import pandas as pd
import pytest

from mobiledx.data.adapters import registry, scan_ham10000
from mobiledx.data.adapters.registry import (
    DatasetLayoutError,
    Quarantine,
    apply_label_policy,
    label_disagreement,
    match_listed_images,
    missing_files_note,
    policy_columns,
    read_table,
    refusal_summary,
)
from mobiledx.data.manifest import QUARANTINE_COLUMNS
from mobiledx.params import LabelPolicy
from tests.support import ham_rows, write_ham10000

# --- Registration and the metadata file ----------------------------------------------------------------------------


def test_register_files_an_adapter_under_its_kind_with_what_it_can_do(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    def plain(raw_dir, options):
        return None

    def both(raw_dir, options):
        return None

    assert registry.register("plain-kind")(plain) is plain and registry.get_adapter("plain-kind") is plain
    assert plain.label_policy is False and plain.arrays is False
    registry.register("both-kind", label_policy=True, arrays=True)(both)
    assert registry.get_adapter("both-kind") is both and both.label_policy is True and both.arrays is True
    assert {"plain-kind", "both-kind"} <= set(registry.known_kinds())


def test_the_metadata_file_is_found_anywhere_below_the_root_and_must_be_there_once(tmp_path):
    root = write_ham10000(tmp_path / "ham" / "download" / "release", ham_rows(1)).parents[1]
    scan = scan_ham10000(root)
    assert len(scan.records) == 14 and scan.quarantine.empty
    assert scan.records["path"].iloc[0] == "download/release/HAM10000_images_part_1/ISIC_0024306.jpg"
    second = root / "old" / "ham10000_metadata.csv"
    second.parent.mkdir()
    second.write_text("lesion_id,image_id,dx\n")
    with pytest.raises(DatasetLayoutError) as raised:
        scan_ham10000(root)
    assert str(raised.value) == (f"{root}: several HAM10000_metadata.csv files ({root}/download/release/"
                                 f"HAM10000_metadata.csv, {second}). Fix: keep exactly one")


def test_identical_files_of_one_name_in_the_dataset_folder_itself_are_read_once(tmp_path):
    rows = ham_rows(1)
    root = write_ham10000(tmp_path / "ham", rows, folders=(".",))
    first = rows[0]["image_id"]
    (root / f"{first}.png").write_bytes((root / f"{first}.jpg").read_bytes())
    scan = scan_ham10000(root)
    assert scan.quarantine.empty and len(scan.records) == 14
    assert scan.notes == ["the dataset folder holds 1 image(s) twice, as identical files under one name with another "
                          "extension: each is read once; the copies are listed as ignored"]


# --- Tables that need the slow, row by row path ------------------------------------------------------------------


def test_a_table_with_a_malformed_row_is_read_row_by_row_like_any_other(tmp_path):
    path = tmp_path / "metadata.csv"
    path.write_bytes(b'image_id,site,note\r\nA,back,\r\n\r\nB,face,"two\r\nlines"\r\nC\r\nD,arm,x,y\r\n'
                     b"E,leg,,\r\n")
    quarantine = Quarantine()
    table, refused = read_table(path, ["image_id"], "a test table", quarantine, id_column="image_id")
    assert table.values.tolist() == [["A", "back", ""], ["B", "face", "two\r\nlines"], ["C", "", ""],
                                     ["E", "leg", ""]]
    assert refused == {"D": ["metadata.csv line 7 has 4 values where its header has 3 (a value holding an unquoted "
                             "comma?): the row cannot be read"]}
    without_ids, refused = read_table(path, ["image_id"], "a test table", Quarantine())
    assert without_ids.equals(table) and list(refused) == ["line 7"]


# --- Listings paired with files --------------------------------------------------------------------------------


def test_refused_listings_without_a_file_name_no_path_and_a_row_without_an_id_is_named(tmp_path):
    images = pd.DataFrame({"stem": ["A", "B"], "path": ["x/A.jpg", "x/B.jpg"]})
    quarantine = Quarantine()
    found = match_listed_images(pd.Series(["B", "C", "C", "", "A"]), images, quarantine, "list.csv",
                                refused={"D": ["list.csv line 9 cannot be read"]})
    assert found.index.name == "image_id" and found.to_dict() == {"B": "x/B.jpg", "A": "x/A.jpg"}
    assert found.index.tolist() == ["B", "A"]  # in the order listed
    assert quarantine.rows == [
        {"image_id": "C", "path": "", "reason": "image id listed 2 times in list.csv: which row describes it is "
                                                "unknown"},
        {"image_id": "C", "path": "", "reason": "image id listed 2 times in list.csv: which row describes it is "
                                                "unknown"},
        {"image_id": "", "path": "", "reason": "a row of list.csv without an image id"},
        {"image_id": "D", "path": "", "reason": "list.csv line 9 cannot be read"}]


@pytest.mark.parametrize(("listed", "missing", "noted"), [(10, 1, True), (5, 1, True), (100, 9, False),
                                                          (100, 10, True), (0, 0, False)])
def test_a_partial_download_is_noted_from_a_tenth_of_the_listing_and_at_least_one_image(listed, missing, noted):
    ids = [f"ISIC_{k:07d}" for k in range(missing)]
    note = missing_files_note(listed, ids[::-1], "list.csv")
    assert note == ([f"{missing:,} of the {listed:,} images listed in list.csv have no file ({ids[0]} … {ids[-1]}): "
                     f"the download looks partial."] if noted else [])
    assert missing_files_note(10, ["a"], "list.csv", "Download it.")[0].endswith("looks partial. Download it.")


# --- Label policies ----------------------------------------------------------------------------------------------


def test_a_key_naming_another_column_splits_at_its_first_equals_sign():
    policy = LabelPolicy(map={"note=a=b": "marked", "site=": "no site", "nv": "nevus"})
    assert policy_columns(policy, "dx") == ["dx", "note", "site"]
    assert apply_label_policy({"dx": "nv", "note": "a=b", "site": "back"}, policy, "dx") == ("marked", None)
    assert apply_label_policy({"dx": "nv", "site": "back"}, policy, "dx") == ("nevus", None)
    assert apply_label_policy({"dx": "nv"}, policy, "dx") == ("no site", None)  # a column absent reads as empty
    assert apply_label_policy({"site": "back"}, LabelPolicy(), "dx") == (
        None, "no dx value (datasets.<name>.labels.missing: quarantine)")


def test_map_keys_typed_two_ways_for_one_class_are_one_key():
    policy = LabelPolicy(map={"Café": "benign", unicodedata.normalize("NFD", "Café"): "benign"})
    assert apply_label_policy({"dx": "Café"}, policy, "dx") == ("benign", None)


def test_columns_that_disagree_are_named_in_order_with_their_values_and_answers():
    readers = {"a": lambda v: "benign" if v == "yes" else None, "b": lambda v: "malignant" if v else None,
               "c": lambda v: None}
    assert label_disagreement({"a": "yes", "b": " x ", "c": "z"}, readers, "its row") == (
        "its row contradicts itself: a 'yes' (benign), b 'x' (malignant). Which is right is unknown")
    assert label_disagreement({"a": "yes", "b": ""}, readers, "its row") is None
    assert label_disagreement({"a": "yes"}, readers, "its row") is None  # a column absent says nothing


# --- When nothing survives -------------------------------------------------------------------------------------


def _refused(*rows: tuple[str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=QUARANTINE_COLUMNS)


def test_the_three_most_common_kinds_of_refusal_are_named_with_an_example_and_the_rest_counted():
    quarantine = _refused(
        ("ISIC_0000001", "a/1.jpg", "image too small: 10x12 px (a side below ingest.min_image_side=16)"),
        ("ISIC_0000002", "a/2.jpg", "image too small: 11x12 px (a side below ingest.min_image_side=16)"),
        ("ISIC_0000003", "a/3.jpg", "image too small: 9x9 px (a side below ingest.min_image_side=16)"),
        ("ISIC_0000004", "", "image listed in m.csv but no file found"),
        ("ISIC_0000005", "", "image listed in m.csv but no file found"),
        ("x", "x.zip", "not an image file (.zip)"), ("y", "y.doc", "not an image file (.doc)"),
        ("z", "z", "dx 'mel' is odd"), ("w", "w", "dx \"nv\" is odd"))
    message = refusal_summary(quarantine, "raw/ham", ["a note.", "another."])
    assert message == (
        "raw/ham: all 9 inputs were refused, so nothing is left to ingest. Most common reasons: 3 × image too small: "
        "10x12 px (a side below ingest.min_image_side=16) (e.g. a/1.jpg); 2 × dx 'mel' is odd (e.g. z); 2 × image "
        "listed in m.csv but no file found (e.g. ISIC_0000004); 2 for 2 other reason(s). Note: a note. Note: another. "
        "Fix: check ingest.min_image_side and ingest.max_aspect_ratio, or set ingest.unfit_images: keep; put the "
        "images in the dataset folder (extract the image archives there), or set datasets.<name>.path to the folder "
        "that holds the images and metadata.")


def test_kinds_of_equal_count_are_ordered_by_their_reason_with_values_and_numbers_blanked():
    quarantine = _refused(("a", "a", "bad lesion 7"), ("b", "b", "bad lesion 'x'"), ("c", "c", "bad lesion Q"),
                          ("d", "d", "bad image_id"), ("e", "e", "bad dx_type"), ("f", "f", "bad ISIC_ABC"),
                          ("g", "g", "bad ISIC_DEF"))
    message = refusal_summary(quarantine, "raw", top=10)
    assert message == ("raw: all 7 inputs were refused, so nothing is left to ingest. Most common reasons: 2 × bad "
                       "ISIC_ABC (e.g. f); 1 × bad dx_type (e.g. e); 1 × bad image_id (e.g. d); 1 × bad lesion 7 (e.g. "
                       "a); 1 × bad lesion 'x' (e.g. b); 1 × bad lesion Q (e.g. c). Fix: correct the inputs named "
                       "above, or check datasets.<name>.kind and datasets.<name>.path.")


def test_exactly_three_kinds_leave_no_other_reason():
    quarantine = _refused(("a", "a", "one"), ("b", "b", "two"), ("c", "c", "three"))
    assert refusal_summary(quarantine, "raw").endswith("Most common reasons: 1 × one (e.g. a); 1 × three (e.g. c); "
                                                       "1 × two (e.g. b). Fix: correct the inputs named above, or "
                                                       "check datasets.<name>.kind and datasets.<name>.path.")


def test_nothing_refused_and_nothing_found_says_where_to_look():
    assert refusal_summary(_refused(), "raw") == (
        "raw: no image found, and no metadata row or file was refused. Fix: check that datasets.<name>.path is the "
        "dataset's folder and that datasets.<name>.kind is right")

"""Ingest's own decisions, value by value: how groups are formed and said, which copies are refused and why,
what the manifest's hashes, sizes and columns hold, what a refusal of everything carries, and what it prints."""

import hashlib
import io
import os
import pickle
import re
import tempfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mobiledx.data import intake
from mobiledx.data.adapters import scan_ham10000
from mobiledx.data.demo import generate_ham10000_demo
from mobiledx.data.intake import ImageFitness, IngestError, NothingToIngestError, assign_groups, ingest
from mobiledx.data.manifest import IGNORED_COLUMNS, MANIFEST_COLUMNS, QUARANTINE_COLUMNS, ScanOptions
from mobiledx.data.near_duplicates import DEFAULT_MAX_DISTANCE
from mobiledx.params import LabelPolicy
from tests.support import altered_copy, ham_rows, solid_image, write_ham10000

# --- Groups: which, and the sentence that says how they were formed ---------------------------------------------

# one image of each kind: patient and lesion, patient only (twice), lesion only (three), neither
IDS = pd.DataFrame({"image_id": [f"i{k}" for k in range(7)],
                    "patient_id": ["P1", "P1", "P2", "", "", "", ""],
                    "lesion_id": ["L1", "", "", "L3", "L3", "L4", ""]})


@pytest.mark.parametrize(("group_by", "groups", "sentence"), [
    ("patient", ["P1", "P1", "P2", "lesion:L3", "lesion:L3", "lesion:L4", "image:i6"],
     "grouped by patient (2 patients); 3 image(s) without a patient id grouped by their lesion, 1 alone"),
    ("auto", ["P1", "P1", "P2", "lesion:L3", "lesion:L3", "lesion:L4", "image:i6"],
     "grouped by patient (2 patients); 3 image(s) without a patient id grouped by their lesion, 1 alone"),
    ("lesion", ["L1", "image:i1", "image:i2", "L3", "L3", "L4", "image:i6"],
     "grouped by lesion (3 lesions); 3 image(s) without a lesion id, each alone"),
    ("image", [f"i{k}" for k in range(7)], "grouped by image (7 images)"),
])
def test_each_image_falls_back_to_the_next_id_it_has_and_the_sentence_counts_them(group_by, groups, sentence):
    found, said = assign_groups(IDS, group_by)
    assert found.tolist() == groups and said == sentence


def test_auto_takes_patients_then_lesions_then_images_and_a_complete_id_needs_no_fallback():
    lesions_only = IDS.assign(patient_id="")
    assert assign_groups(lesions_only, "auto")[1] == "grouped by lesion (3 lesions); 3 image(s) without a lesion " \
                                                     "id, each alone"
    assert assign_groups(lesions_only.assign(lesion_id=""), "auto")[1] == "grouped by image (7 images)"
    patients = IDS.assign(patient_id=["P1", "P1", "P2", "P2", "P3", "P3", "P3"])
    groups, said = assign_groups(patients, "patient")
    assert said == "grouped by patient (3 patients)" and groups.tolist() == patients["patient_id"].tolist()


@pytest.mark.parametrize("group_by", ["patient", "lesion"])
def test_grouping_by_an_id_no_image_has_is_refused_naming_it(group_by):
    with pytest.raises(IngestError) as raised:
        assign_groups(IDS.assign(patient_id="", lesion_id=""), group_by)
    assert str(raised.value) == (f"datasets.<name>.group_by is {group_by!r} but no image has a {group_by} id. "
                                 f"Fix: group_by: auto (or lesion / image)")


# --- Images unfit for the model: the limits themselves are fit ----------------------------------------------------


def test_an_image_at_the_limits_is_fit_and_one_pixel_beyond_is_not():
    fitness = ImageFitness()
    assert fitness.problem(16, 16) is None and fitness.problem(64, 16) is None and fitness.problem(16, 64) is None
    assert fitness.problem(15, 40) == "image too small: 15x40 px (a side below ingest.min_image_side=16)"
    assert fitness.problem(65, 16) == ("image too elongated: 65x16 px (aspect ratio above "
                                       "ingest.max_aspect_ratio=4)")


# --- Refusals and their reasons ------------------------------------------------------------------------------------


def _ingest(root, tmp_path, **arguments):
    return ingest(root, arguments.pop("kind", "ham10000"), 8, tmp_path / "out" / "images.npy",
                  **{"workers": 1, **arguments})


def _quarantine(result) -> list[tuple[str, str, str]]:
    return list(result.quarantine.itertuples(index=False, name=None))


def test_a_label_policy_on_a_layout_without_one_names_the_layouts_that_have_one(tmp_path):
    (tmp_path / "folder" / "benign").mkdir(parents=True)
    with pytest.raises(IngestError) as raised:
        _ingest(tmp_path / "folder", tmp_path, kind="folder", options=ScanOptions(labels=LabelPolicy(map={"a": "b"})))
    assert str(raised.value) == ("datasets.<name>.labels is set, but the folder layout takes its classes from its "
                                 "folders or files and would ignore it. Fix: remove labels from the entry (label "
                                 "policies apply to ham10000, isic2019, isic2020, isic_archive)")


def test_a_lesion_labelled_two_ways_names_three_images_per_label_at_most(tmp_path):
    rows = [{"lesion_id": "HAM_0000001", "image_id": f"ISIC_{k:07d}", "dx": "akiec" if k < 3 else "nv",
             "dx_type": "histo", "age": "50.0", "sex": "male", "localization": "back"} for k in range(7)]
    rows.append({**rows[0], "lesion_id": "HAM_0000002", "image_id": "ISIC_0000007"})
    result = _ingest(write_ham10000(tmp_path / "ham", rows, folders=("images",)), tmp_path)
    reason = ("lesion HAM_0000001 is labelled 'akiec' (ISIC_0000000, ISIC_0000001, ISIC_0000002) and 'nv' "
              "(ISIC_0000003, ISIC_0000004, ISIC_0000005 …) across its images: which is right is unknown")
    assert _quarantine(result) == [(f"ISIC_{k:07d}", f"images/ISIC_{k:07d}.jpg", reason) for k in range(7)]
    assert result.manifest["image_id"].tolist() == ["ISIC_0000007"]


def test_rows_refused_for_a_field_or_a_path_are_quarantined_with_their_id_and_path(tmp_path, monkeypatch):
    rows = ham_rows(1)
    rows[3]["age"] = "sixty"
    root = write_ham10000(tmp_path / "ham", rows, folders=("images",))
    inside = str(root / "images" / f"{rows[5]['image_id']}.jpg")  # an absolute path, even one inside the root

    def absolute_path_adapter(raw_dir, options):
        scan = scan_ham10000(raw_dir, options)
        scan.records.loc[5, "path"] = inside
        return scan

    monkeypatch.setattr(intake, "get_adapter", lambda kind: absolute_path_adapter)
    result = _ingest(root, tmp_path)
    assert _quarantine(result) == [
        (rows[3]["image_id"], f"images/{rows[3]['image_id']}.jpg", "age 'sixty' is not a number of years"),
        (rows[5]["image_id"], inside, "path resolves outside the dataset root")]


def test_classes_a_reader_cannot_tell_apart_are_refused_even_when_one_has_no_image(tmp_path):
    root = write_ham10000(tmp_path / "ham", ham_rows(1))
    policy = LabelPolicy(map={"akiec": "benign", "other": "Benign"})  # nothing is labelled "other"
    with pytest.raises(IngestError) as raised:
        _ingest(root, tmp_path, options=ScanOptions(labels=policy))
    assert str(raised.value) == (f"{root}: labels that differ only in letter case, width, invisible characters or "
                                 f"lookalike letters of another script: 'Benign' (0 image(s)) and 'benign' (2 "
                                 f"image(s)). One class or two? Fix: send them to one class with "
                                 f"datasets.<name>.labels.map (or correct the metadata)")


def _jpeg(colour) -> bytes:
    buffer = io.BytesIO()
    solid_image(colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_identical_files_keep_their_first_copy_or_are_all_refused_listed_in_the_order_of_the_metadata(tmp_path):
    rows = ham_rows(1)  # 14 images, two per lesion; labels akiec, akiec, bcc, bcc, bkl, bkl, df, df, mel, mel ...
    root = write_ham10000(tmp_path / "ham", rows, folders=("images",))
    folder = root / "images"
    ids = [row["image_id"] for row in rows]
    # two photos, each filed several times: rows 0, 1 (akiec) and 2 (bcc) hold one, rows 8 and 9 (mel) the other;
    # the one listed first is the one whose content sorts last, so that listing order is not content order
    first, second = sorted([_jpeg((250, 10, 10)), _jpeg((10, 250, 10))], key=lambda data: hashlib.sha256(data).digest(),
                           reverse=True)
    for copy in ids[:3]:
        (folder / f"{copy}.jpg").write_bytes(first)
    for copy in ids[8:10]:
        (folder / f"{copy}.jpg").write_bytes(second)
    (folder / f"{ids[11]}.jpg").write_bytes(b"not an image")
    result = _ingest(root, tmp_path, near_duplicates="report")
    conflict = "same content as {} with conflicting labels ['akiec', 'bcc']"
    assert [row[:2] for row in _quarantine(result)] == [(i, f"images/{i}.jpg") for i in [ids[11], *ids[:3], ids[9]]]
    reasons = [row[2] for row in _quarantine(result)]
    assert reasons[0].startswith("unreadable: ")
    assert reasons[1:] == [conflict.format(f"{ids[1]}, {ids[2]}"), conflict.format(f"{ids[0]}, {ids[2]}"),
                           conflict.format(f"{ids[0]}, {ids[1]}"), f"duplicate content of {ids[8]} (same label)"]


# --- What the manifest holds -----------------------------------------------------------------------------------


def test_the_manifest_holds_each_files_sha256_and_its_size_in_pixels_as_integers(tmp_path):
    rows = ham_rows(1)
    root = write_ham10000(tmp_path / "ham", rows, folders=("images",))
    for k, row in enumerate(rows):
        solid_image((k * 9, 40, 80), (30 + k, 20)).save(root / "images" / f"{row['image_id']}.jpg")
    result = _ingest(root, tmp_path)
    manifest = result.manifest.set_index("image_id")
    for k, row in enumerate(rows):
        data = (root / "images" / f"{row['image_id']}.jpg").read_bytes()
        assert manifest.at[row["image_id"], "sha256"] == hashlib.sha256(data).hexdigest()
        assert (manifest.at[row["image_id"], "width"], manifest.at[row["image_id"], "height"]) == (30 + k, 20)
    assert list(result.manifest.columns) == MANIFEST_COLUMNS
    assert result.manifest["width"].dtype.kind == result.manifest["height"].dtype.kind == "i"
    assert result.manifest["sha256"].dtype == result.manifest["image_id"].dtype  # text like every id column
    assert list(result.quarantine.columns) == QUARANTINE_COLUMNS and result.quarantine.empty
    assert result.grouping == "grouped by lesion (7 lesions)" and result.converted_modes == {}
    assert result.near_duplicates["policy"] == "group"  # the default


def test_images_stored_in_another_mode_are_counted_by_mode(tmp_path):
    rows = ham_rows(1)
    root = write_ham10000(tmp_path / "ham", rows, folders=("images",))
    for k, row in enumerate(rows[:3]):
        (root / "images" / f"{row['image_id']}.jpg").unlink()
        Image.new("L", (24, 24), 40 * k).save(root / "images" / f"{row['image_id']}.png")
    assert _ingest(root, tmp_path).converted_modes == {"L": 3}


def test_an_array_image_hash_covers_its_shape_and_its_pixels_as_stored():
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert intake._hash_array(pixels) == intake._hash_array(pixels.copy())
    assert intake._hash_array(pixels) != intake._hash_array(pixels.reshape(4, 12))
    assert intake._hash_array(pixels[:, ::2]) == intake._hash_array(np.ascontiguousarray(pixels[:, ::2]))
    assert intake._hash_array(pixels[:, ::2]) != intake._hash_array(pixels[:, 1::2])


def test_a_near_duplicate_quarantined_leaves_the_manifest_and_the_cache_row_for_row(tmp_path):
    root = tmp_path / "ham"
    demo = generate_ham10000_demo(root, 8, seed=21)
    folder = root / "HAM10000_images_part_1"
    original = demo["image_id"].iloc[0]
    copy = altered_copy((folder / f"{original}.jpg").read_bytes(), np.random.default_rng(0))
    (folder / "ISIC_9000000.jpg").write_bytes(copy)  # the same photo filed again as another lesion, listed 4th
    metadata = pd.read_csv(root / "HAM10000_metadata.csv", dtype=str, keep_default_na=False)
    again = metadata[metadata["image_id"] == original].assign(image_id="ISIC_9000000", lesion_id="HAM_9000000")
    pd.concat([metadata.iloc[:3], again, metadata.iloc[3:]]).to_csv(root / "HAM10000_metadata.csv", index=False)
    reported = _ingest(root, tmp_path / "report", near_duplicates="report")
    result = _ingest(root, tmp_path, near_duplicates="quarantine")
    assert _quarantine(result) == [
        ("ISIC_9000000", "HAM10000_images_part_1/ISIC_9000000.jpg", f"near-duplicate of {original} across groups "
         f"(perceptual hashes within distance {DEFAULT_MAX_DISTANCE}); ingest.near_duplicates: quarantine keeps one "
         f"image of each such set")]
    kept = reported.manifest["image_id"] != "ISIC_9000000"
    assert reported.manifest["image_id"].tolist()[3] == "ISIC_9000000" and list(result.manifest.columns) == \
        MANIFEST_COLUMNS
    assert result.manifest.equals(reported.manifest[kept].reset_index(drop=True))
    assert np.array_equal(result.images[:], reported.images[:][kept.to_numpy()])
    closer = _ingest(root, tmp_path / "closer", near_duplicates="quarantine", near_duplicate_distance=0)
    assert closer.quarantine.empty and closer.near_duplicates["max_distance"] == 0


# --- Where the work happens, and what it prints --------------------------------------------------------------------


def test_workers_default_to_one_per_cpu_and_the_records_table_waits_beside_the_cache(tmp_path, monkeypatch):
    root = write_ham10000(tmp_path / "ham", ham_rows(1))
    asked = []

    class Counted(intake.Workers):
        def __init__(self, count):
            asked.append(count)
            super().__init__(1)

    monkeypatch.setattr(intake, "Workers", Counted)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))  # the system's temporary folder
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    for workers in (None, 2):
        _ingest(root, tmp_path, workers=workers)
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    _ingest(root, tmp_path, workers=None)
    assert asked == [3, 2, 1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["images.npy"]


def test_ingest_shows_its_progress_by_step_and_the_near_duplicate_search_with_its_time(tmp_path, capsys):
    _ingest(write_ham10000(tmp_path / "ham", ham_rows(1)), tmp_path)
    printed = capsys.readouterr()
    assert "hash: 100%" in printed.err and "decode: 100%" in printed.err
    took = re.fullmatch(r"near-duplicates: 14 images hashed and compared in (\d+\.\d) s\n", printed.out)
    assert took is not None and float(took.group(1)) < 60


# --- When nothing survives ---------------------------------------------------------------------------------------


def test_nothing_found_carries_the_empty_tables_with_their_columns_and_the_files_ignored(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.txt").write_text("no images yet")
    with pytest.raises(NothingToIngestError) as raised:
        _ingest(tmp_path / "empty", tmp_path, kind="folder")
    error = raised.value
    assert str(error).startswith(f"{tmp_path / 'empty'}: no image found, and no metadata row or file was refused.")
    assert list(error.quarantine.columns) == QUARANTINE_COLUMNS and error.quarantine.empty
    assert list(error.ignored.columns) == IGNORED_COLUMNS
    assert error.ignored.values.tolist() == [["README.txt",
                                              "licence, attribution or readme text shipped with the data"]]
    copy = pickle.loads(pickle.dumps(error))  # how it crosses the scan process's pipe
    assert type(copy) is NothingToIngestError and str(copy) == str(error)
    assert copy.quarantine.equals(error.quarantine) and copy.ignored.equals(error.ignored)


@pytest.mark.parametrize("spoil", ["ages", "images"])
def test_every_row_refused_says_so_naming_the_dataset_folder(tmp_path, spoil):
    rows = ham_rows(1)
    if spoil == "ages":
        for row in rows:
            row["age"] = "unknown"
    root = write_ham10000(tmp_path / "ham", rows)
    if spoil == "images":
        for image in root.rglob("*.jpg"):
            image.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(NothingToIngestError) as raised:
        _ingest(root, tmp_path)
    assert str(raised.value).startswith(f"{root}: all 14 inputs were refused, so nothing is left to ingest. ")
    assert len(raised.value.quarantine) == 14


# --- Images shipped as arrays (MedMNIST) ---------------------------------------------------------------------------


def _archive(root, images):
    root.mkdir(parents=True)
    np.savez(root / "dermamnist.npz", train_images=images, train_labels=np.arange(len(images)).reshape(-1, 1) % 7)
    return root


def test_array_images_keep_their_size_and_mode_and_unreadable_arrays_are_named(tmp_path):
    shades = [0, 60, 120]
    images = np.stack([np.full((20, 28), shade, np.uint8) for shade in shades])  # gray, wider than tall
    result = _ingest(_archive(tmp_path / "derma", images), tmp_path, kind="medmnist")
    assert result.manifest[["width", "height"]].values.tolist() == [[28, 20]] * 3
    assert result.converted_modes == {"L": 3} and result.images[:, 4, 4].tolist() == [[s] * 3 for s in shades]
    assert result.manifest["sha256"].is_unique and result.grouping == "grouped by image (3 images)"
    with pytest.raises(NothingToIngestError) as raised:
        _ingest(_archive(tmp_path / "wide", images.astype(np.uint16)), tmp_path / "wide-out", kind="medmnist")
    assert raised.value.quarantine["reason"].tolist() == ["unreadable: expected uint8 pixels, got uint16"] * 3

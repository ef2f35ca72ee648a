"""Property-based tests of every adapter (issue 25): generated metadata tables and folders with the quirks of
real downloads (encodings, delimiters, blanks, duplicates, Unicode forms, extra columns, missing files, wrong
types, companion files) never raise anything but a :class:`MobiledxError`, and records + quarantine + ignored
account for every listing and every file, each with a non-empty reason that is true."""

import os
import tempfile
import unicodedata
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mobiledx.data.adapters import get_adapter  # noqa: E402
from mobiledx.data.adapters.registry import IMAGE_SUFFIXES, dataset_files  # noqa: E402
from mobiledx.data.intake import NothingToIngestError, ingest  # noqa: E402
from mobiledx.data.manifest import ScanOptions  # noqa: E402
from mobiledx.errors import MobiledxError  # noqa: E402
from mobiledx.params import LabelPolicy  # noqa: E402
from tests.support import tiny_png  # noqa: E402

# A few seconds each; MOBILEDX_PROPERTY_EXAMPLES=500 (and a random seed) searches deeper.
EXAMPLES = int(os.environ.get("MOBILEDX_PROPERTY_EXAMPLES", "25"))
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                derandomize="MOBILEDX_PROPERTY_EXAMPLES" not in os.environ)


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


@contextmanager
def folder():
    with tempfile.TemporaryDirectory(prefix="mobiledx-prop-") as name:
        yield Path(name) / "raw"


# --- what the generated datasets are made of --------------------------------------------------------------------

ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"])
DELIMITERS = st.sampled_from([",", ";", "\t"])
BLANKISH = st.sampled_from(["", " ", "nan", "NULL"])
ID_STEMS = st.sampled_from(["ISIC_0000001", "ISIC_0000002", "ISIC_0000003", "ISIC_0000004", "Ménard_5"])
COMPANIONS = st.sampled_from(["Thumbs.db", "desktop.ini", ".DS_Store", "._ISIC_0000001.jpg", "__MACOSX/x.jpg",
                              "LICENSE.txt", "licenses/CC-BY.txt", "hmnist_28_28_RGB.csv", "README.md",
                              "notes.docx", "archive.zip", "scan.dcm", "old/ISIC_0000009.jpg"])


@st.composite
def image_id(draw) -> str:
    """An id as written in a table: maybe decomposed (NFD), maybe with spaces around."""
    stem = draw(ID_STEMS)
    if draw(st.booleans()):
        stem = unicodedata.normalize("NFD", stem)
    return draw(st.sampled_from(["", " "])) + stem + draw(st.sampled_from(["", " "]))


@st.composite
def files_for(draw, stem: str, folders: list[str]) -> list[tuple[str, bytes]]:
    """0, 1 or 2 files for an id (the second an identical copy or another image), in the dataset's folders."""
    count = draw(st.sampled_from([0, 1, 1, 1, 2]))
    suffix = draw(st.sampled_from([".jpg", ".jpg", ".png", ".JPG", ".tif"]))
    content = tiny_png(draw(st.integers(0, 5)))
    name = unicodedata.normalize(draw(st.sampled_from(["NFC", "NFD"])), stem.strip())
    out = []
    for copy in range(count):
        body = content if copy == 0 or draw(st.booleans()) else tiny_png(draw(st.integers(6, 9)))
        out.append((f"{folders[copy % len(folders)]}/{name}{suffix}".lstrip("/"), body))
    return out


def write_table(path: Path, header: list[str], rows: list[list[str]], encoding: str, delimiter: str,
                malformed: set[int]) -> None:
    """A table as a person saves it. Rows in ``malformed`` get one value too many, after the id."""
    lines = []
    for number, row in enumerate([header, *rows]):
        cells = [f'"{cell}"' if delimiter in cell or '"' in cell else cell for cell in row]
        if number - 1 in malformed:
            cells.append("extra")
        lines.append(delimiter.join(cells))
    text = "\r\n".join(lines) + "\r\n"
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:  # cp1252 cannot write a combining accent: the file is UTF-8 then
        data = text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_files(root: Path, files: list[tuple[str, bytes]]) -> None:
    for relative, content in files:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.write_bytes(content)


# --- the properties -------------------------------------------------------------------------------------------


def _paths(cell: str) -> list[str]:
    return [part for part in str(cell).split(", ") if part]


def check_accounting(root: Path, scan, listed: list[str], table: str = "") -> None:
    """Records, quarantine and ignored account for every file and every ``listed`` id (of the metadata file
    ``table``), each with a true reason."""
    records, quarantine, ignored = scan.records, scan.quarantine, scan.ignored
    assert records["image_id"].is_unique
    assert quarantine["reason"].map(lambda r: isinstance(r, str) and r.strip() != "").all(), quarantine
    assert ignored["reason"].map(lambda r: isinstance(r, str) and r.strip() != "").all(), ignored
    files = [f for f in dataset_files(root) if os.path.isfile(root / f)]
    accounted = set(records["path"]) | set(ignored["path"])
    accounted |= {path for cell in quarantine["path"] for path in _paths(cell)}
    assert not set(files) - accounted, f"files nobody accounts for: {set(files) - accounted}"
    assert not set(records["path"]) & set(ignored["path"])
    seen = set(records["image_id"]) | set(quarantine["image_id"])
    for listing in listed:
        key = nfc(listing.strip())
        assert key in seen, f"listing {listing!r} unaccounted"
    stems = {nfc(os.path.splitext(f.rsplit("/", 1)[-1])[0]) for f in files}
    for row in quarantine.itertuples(index=False):  # the reasons are true
        if row.reason.endswith("but no file found"):
            assert row.path == "" and row.image_id not in stems, row
        if row.reason.startswith("not an image file ("):
            suffix = os.path.splitext(row.path)[1]
            assert suffix.lower() not in IMAGE_SUFFIXES and (suffix or "no extension") in row.reason, row
        if row.reason.startswith("image file not listed in"):
            assert row.image_id not in {nfc(i.strip()) for i in listed}, row
        if row.reason.startswith("image id listed ") and row.reason.split()[5].rstrip(":") == table:
            times = int(row.reason.split()[3])
            assert sum(nfc(i.strip()) == row.image_id for i in listed) >= times - 1, row
        if row.reason == "several different files for one image id":
            contents = {(root / p).read_bytes() for p in _paths(row.path)}
            assert len(_paths(row.path)) >= 2 and len(contents) >= 2, row
    for row in ignored.itertuples(index=False):
        if row.reason.startswith("identical copy of "):
            assert (root / row.path).read_bytes() == (root / row.reason.removeprefix("identical copy of ")).read_bytes()
    for path, label in zip(records["path"], records["label"], strict=True):
        if "#" not in path:
            assert os.path.isfile(root / path) and os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES
        assert label in scan.classes, (label, scan.classes)


def scan_or_refuse(kind: str, root: Path, options: ScanOptions = ScanOptions()):
    """The adapter's scan, or None when it refuses the dataset with a MobiledxError (one message, with a fix)."""
    try:
        return get_adapter(kind)(root, options)
    except MobiledxError as error:
        assert "Fix:" in str(error) or "not a folder" in str(error), str(error)
        return None


POLICIES = st.sampled_from([LabelPolicy(), LabelPolicy(map={"MEL": "mel", "nv": "nv"}),
                            LabelPolicy(map={"Benign": "benign", "Malignant": "malignant"}, unmapped="other"),
                            LabelPolicy(missing="other")])


# --- HAM10000 -------------------------------------------------------------------------------------------------


@st.composite
def ham10000(draw):
    n = draw(st.integers(0, 6))
    ids = [draw(image_id()) for _ in range(n)]
    extra = draw(st.sampled_from([[], ["dataset"], ["Unnamed: 0", "note"]]))
    header = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", *extra]
    rows = [[draw(st.sampled_from(["HAM_1", "HAM_2", "", " HAM_3"])), i,
             draw(st.sampled_from(["mel", "nv", "MEL", " bkl ", "", "melanoma?", "Nv", "nan"])), "histo",
             draw(st.sampled_from(["45.0", "", "sixty", "200", "45,5", "0.0", "-1", "nan"])),
             draw(st.sampled_from(["male", "F", "", "unknown", "other"])),
             draw(st.sampled_from(["back", "", "Épaule", "unknown"])),
             *[draw(st.sampled_from(["x", "", "1;2"])) for _ in extra]] for i in ids]
    malformed = set(draw(st.lists(st.integers(0, max(0, n - 1)), max_size=1))) if n else set()
    folders = draw(st.sampled_from([["HAM10000_images_part_1"], ["HAM10000_images_part_1", "ham10000_images_part_1"],
                                    ["", "nv"]]))
    files = [f for stem in dict.fromkeys(ids) for f in draw(files_for(stem, folders))]
    companions = draw(st.lists(COMPANIONS, max_size=3))
    return header, rows, malformed, files, companions, draw(ENCODINGS), draw(DELIMITERS), draw(POLICIES)


@FAST
@given(ham10000())
def test_ham10000_accounts_for_every_listing_and_file(dataset):
    header, rows, malformed, files, companions, encoding, delimiter, policy = dataset
    with folder() as root:
        write_table(root / "HAM10000_metadata.csv", header, rows, encoding, delimiter, malformed)
        write_files(root, files + [(c, b"\0companion") for c in companions])
        scan = scan_or_refuse("ham10000", root, ScanOptions(labels=policy))
        if scan is not None:
            check_accounting(root, scan, [row[1] for row in rows], "HAM10000_metadata.csv")
            if not policy.map:  # never relabelled: the class is the row's own dx (or the missing class)
                dx = {nfc(row[1].strip()): nfc(row[2].strip().lower()) for row in rows}
                for image, label in zip(scan.records["image_id"], scan.records["label"], strict=True):
                    assert label == (dx[image] or policy.missing), (image, label, dx[image])


# --- ISIC Archive ---------------------------------------------------------------------------------------------


@st.composite
def isic_archive(draw):
    n = draw(st.integers(0, 6))
    ids = [draw(image_id()) for _ in range(n)]
    columns = ["isic_id", "attribution", "copyright_license", "age_approx", "benign_malignant", "diagnosis_1",
               "diagnosis_3", "lesion_id", "patient_id", "sex"]
    rows = [[i, draw(st.sampled_from(["Hospital Clínic de Barcelona", "ViDIR Group", ""])),
             draw(st.sampled_from(["CC-0", "CC-BY-NC"])), draw(st.sampled_from(["45", "", "eighty"])),
             draw(st.sampled_from(["", "benign", "malignant", "indeterminate"])),
             draw(st.sampled_from(["Benign", "Malignant", "Indeterminate", "", "benign"])),
             draw(st.sampled_from(["Nevus", "Melanoma, NOS", unicodedata.normalize("NFD", "Café-au-lait macule"), ""])),
             draw(st.sampled_from(["IL_1", "IL_2", ""])), draw(st.sampled_from(["IP_1", "IP_2", ""])),
             draw(st.sampled_from(["male", "female", ""]))] for i in ids]
    malformed = set(draw(st.lists(st.integers(0, max(0, n - 1)), max_size=1))) if n else set()
    files = [f for stem in dict.fromkeys(ids) for f in draw(files_for(stem, [""]))]
    companions = draw(st.lists(st.sampled_from(["attribution.txt", "licenses/CC-0.txt", "other.csv",
                                                ".isic-partial.1", "Thumbs.db", "x.dcm"]), max_size=3))
    return columns, rows, malformed, files, companions, draw(ENCODINGS), draw(DELIMITERS), draw(POLICIES)


@FAST
@given(isic_archive())
def test_isic_archive_accounts_for_every_listing_and_file(dataset):
    header, rows, malformed, files, companions, encoding, delimiter, policy = dataset
    with folder() as root:
        write_table(root / "metadata.csv", header, rows, encoding, delimiter, malformed)
        write_files(root, files + [(c, b"\0companion") for c in companions])
        scan = scan_or_refuse("isic_archive", root, ScanOptions(labels=policy))
        if scan is not None:
            check_accounting(root, scan, [row[0] for row in rows], "metadata.csv")
            if len(policy.map) == 2 and "Benign" in policy.map:  # a melanoma is never trained as benign
                bm = {nfc(r[0].strip()): r[4] for r in rows}
                for image, label in zip(scan.records["image_id"], scan.records["label"], strict=True):
                    assert not (label == "benign" and bm.get(image) == "malignant")


# --- ISIC 2019 ------------------------------------------------------------------------------------------------

CLASSES_2019 = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


@st.composite
def isic2019(draw):
    n = draw(st.integers(0, 5))
    ids = [draw(image_id()) for _ in range(n)]
    truth = []
    for i in ids:
        marked = draw(st.sampled_from(CLASSES_2019 + ["MEL+NV", ""]))
        one = draw(st.sampled_from(["1", "1.0"]))
        values = [one if c in marked.split("+") else "0.0" for c in CLASSES_2019]
        if draw(st.integers(0, 5)) == 0:
            values[draw(st.integers(0, 8))] = draw(st.sampled_from(["x", "", "2", "0.5"]))
        truth.append([i, *values])
    meta_ids = ids[:draw(st.integers(0, n))] + draw(st.lists(image_id(), max_size=2))
    metadata = [[i, draw(st.sampled_from(["45", "", "old"])), "anterior torso", draw(st.sampled_from(["BCN_1", ""])),
                 draw(st.sampled_from(["male", ""]))] for i in meta_ids]
    files = [f for stem in dict.fromkeys(ids + meta_ids) for f in draw(files_for(stem, ["ISIC_2019_Training_Input"]))]
    return truth, metadata, files, draw(ENCODINGS), draw(DELIMITERS), draw(POLICIES)


@FAST
@given(isic2019())
def test_isic2019_accounts_for_every_listing_and_file(dataset):
    truth, metadata, files, encoding, delimiter, policy = dataset
    with folder() as root:
        write_table(root / "ISIC_2019_Training_GroundTruth.csv", ["image", *CLASSES_2019], truth, encoding, delimiter,
                    set())
        write_table(root / "ISIC_2019_Training_Metadata.csv", ["image", "age_approx", "anatom_site_general",
                                                               "lesion_id", "sex"], metadata, "utf-8", ",", set())
        write_files(root, files + [("ISIC_2019_Training_Input/LICENSE.txt", b"CC-BY-NC")])
        scan = scan_or_refuse("isic2019", root, ScanOptions(labels=policy))
        if scan is not None:
            check_accounting(root, scan, [row[0] for row in truth], "ISIC_2019_Training_GroundTruth.csv")
            for image, values in ((nfc(row[0].strip()), row[1:]) for row in truth):  # two classes: never one
                if sum(v in ("1", "1.0") for v in values) > 1:
                    assert image not in set(scan.records["image_id"])


# --- ISIC 2020 ------------------------------------------------------------------------------------------------


@st.composite
def isic2020(draw):
    n = draw(st.integers(0, 5))
    ids = [draw(image_id()) for _ in range(n)]
    rows = [[i, draw(st.sampled_from(["IP_1", "IP_2"])), draw(st.sampled_from(["male", "", "female"])),
             draw(st.sampled_from(["45.0", "", "x"])), "torso",
             draw(st.sampled_from(["nevus", "melanoma", "unknown", ""])),
             draw(st.sampled_from(["benign", "malignant", ""])), draw(st.sampled_from(["0", "1", "1.0", "yes", ""]))]
            for i in ids]
    pairs = [(draw(image_id()).strip(), draw(image_id()).strip()) for _ in range(draw(st.integers(0, 2)))]
    files = [f for stem in dict.fromkeys(ids) for f in draw(files_for(stem, ["jpeg/train"]))]
    companions = draw(st.lists(st.sampled_from(["test.csv", "sample_submission.csv", "train/x.dcm"]), max_size=2))
    return rows, pairs, files, companions, draw(ENCODINGS), draw(DELIMITERS), draw(POLICIES)


@FAST
@given(isic2020())
def test_isic2020_accounts_for_every_listing_and_file(dataset):
    rows, pairs, files, companions, encoding, delimiter, policy = dataset
    with folder() as root:
        write_table(root / "train.csv", ["image_name", "patient_id", "sex", "age_approx",
                                         "anatom_site_general_challenge", "diagnosis", "benign_malignant", "target"],
                    rows, encoding, delimiter, set())
        if pairs:
            write_table(root / "ISIC_2020_Training_Duplicates.csv", ["image_name_1", "image_name_2"],
                        [list(p) for p in pairs], "utf-8", ",", set())
        write_files(root, files + [(c, b"a,b\n") for c in companions])
        scan = scan_or_refuse("isic2020", root, ScanOptions(labels=policy))
        if scan is not None:
            check_accounting(root, scan, [row[0] for row in rows], "train.csv")
            said = {nfc(r[0].strip()): (r[5], r[6], r[7]) for r in rows}
            for image, label in zip(scan.records["image_id"], scan.records["label"], strict=True):
                diagnosis, bm, target = said[image]
                malignant = diagnosis == "melanoma" or bm == "malignant" or target in ("1", "1.0")
                assert not (label == "benign" and malignant), (image, said[image])


# --- C-NMC 2019 -----------------------------------------------------------------------------------------------


@st.composite
def cnmc(draw):
    files = []
    for _ in range(draw(st.integers(0, 6))):
        subject = draw(st.sampled_from(["3", "H2", "x"]))
        label = draw(st.sampled_from(["all", "hem"]))
        folder_label = label if draw(st.integers(0, 4)) else draw(st.sampled_from(["all", "hem", "other"]))
        name = f"UID_{subject}_{draw(st.integers(1, 3))}_1_{label}.bmp"
        files.append((f"training_data/fold_{draw(st.integers(0, 2))}/{folder_label}/{name}", tiny_png(0)))
    rows = [[draw(st.sampled_from(["UID_21_1_1_all.bmp", "UID_H22_2_1_hem.bmp", "nonsense"])),
             f"{draw(st.integers(1, 4))}.bmp", draw(st.sampled_from(["1", "0", "2", ""]))]
            for _ in range(draw(st.integers(0, 4)))]
    tests = [(f"test/{k}.bmp", tiny_png(k)) for k in range(1, draw(st.integers(1, 5)))]
    return files, rows, tests, draw(ENCODINGS), draw(DELIMITERS)


@FAST
@given(cnmc())
def test_cnmc_accounts_for_every_listing_and_file(dataset):
    files, rows, tests, encoding, delimiter = dataset
    with folder() as root:
        write_files(root, files + tests + [("Thumbs.db", b"\0")])
        if rows:
            write_table(root / "test_labels.csv", ["Patient_ID", "new_names", "labels"], rows, encoding, delimiter,
                        set())
        root.mkdir(parents=True, exist_ok=True)
        scan = scan_or_refuse("cnmc", root)
        if scan is not None:
            check_accounting(root, scan, [row[1].removesuffix(".bmp") for row in rows])


# --- class folders (folder, isic) -----------------------------------------------------------------------------


@st.composite
def class_tree(draw):
    splits = draw(st.sampled_from([[""], ["train", "test"], ["train", "val", "test"]]))
    names = ["benign", "Benign", "malignant", "Mélanome", unicodedata.normalize("NFD", "Mélanome"), "ne\u200bvus"]
    files = []
    for _ in range(draw(st.integers(0, 8))):
        split = draw(st.sampled_from(splits))
        name = draw(st.sampled_from(names)) if draw(st.integers(0, 5)) else ""
        suffix = draw(st.sampled_from([".jpg", ".png", ".dcm", ".txt", ""]))
        files.append((f"{split}/{name}/{draw(st.integers(0, 3))}{suffix}".replace("//", "/").lstrip("/"),
                      tiny_png(draw(st.integers(0, 3)))))
    return files + [(c, b"\0") for c in draw(st.lists(COMPANIONS, max_size=2))]


@FAST
@given(class_tree(), st.sampled_from(["folder", "isic"]))
def test_class_folders_account_for_every_file(files, kind):
    with folder() as root:
        root.mkdir(parents=True)
        write_files(root, files)
        scan = scan_or_refuse(kind, root)
        if scan is not None:
            check_accounting(root, scan, [])
            assert len({unicodedata.normalize("NFC", c) for c in scan.classes}) == len(scan.classes)


# --- MedMNIST -------------------------------------------------------------------------------------------------


@FAST
@given(st.dictionaries(st.sampled_from(["train", "val", "test"]),
                       st.lists(st.integers(-2, 9), max_size=4), max_size=3),
       st.lists(COMPANIONS, max_size=2))
def test_medmnist_accounts_for_every_array_and_file(splits, companions):
    with folder() as root:
        root.mkdir(parents=True)
        arrays = {}
        for split, labels in splits.items():
            arrays[f"{split}_images"] = np.zeros((len(labels), 4, 4, 3), np.uint8)
            arrays[f"{split}_labels"] = np.array(labels, dtype=np.int64).reshape(-1, 1)
        np.savez(root / "dermamnist.npz", **arrays)
        write_files(root, [(c, b"\0") for c in companions if not c.endswith(".npz")])
        scan = scan_or_refuse("medmnist", root)
        if scan is not None:
            check_accounting(root, scan, [])
            listed = {f"{split}_{i:06d}" for split, labels in splits.items() for i in range(len(labels))}
            assert set(scan.records["image_id"]) | set(scan.quarantine["image_id"]) >= listed


# --- through ingest: decoding included --------------------------------------------------------------------------


@settings(max_examples=max(8, EXAMPLES // 3), deadline=None, suppress_health_check=list(HealthCheck),
          derandomize="MOBILEDX_PROPERTY_EXAMPLES" not in os.environ)
@given(ham10000())
def test_ingest_accounts_for_every_file_or_says_why_nothing_survives(dataset):
    header, rows, malformed, files, companions, encoding, delimiter, policy = dataset
    with folder() as root:
        write_table(root / "HAM10000_metadata.csv", header, rows, encoding, delimiter, malformed)
        write_files(root, files + [(c, b"\0companion") for c in companions])
        out = root.parent / "out" / "images.npy"
        try:
            result = ingest(root, "ham10000", 8, out, workers=1, options=ScanOptions(labels=policy))
        except NothingToIngestError as error:
            assert "Fix:" in str(error)
            return
        except MobiledxError as error:
            assert "Fix:" in str(error)
            return
        check_accounting(root, type("Scan", (), {"records": result.manifest, "quarantine": result.quarantine,
                                                 "ignored": result.ignored, "classes": result.classes}),
                         [row[1] for row in rows], "HAM10000_metadata.csv")
        assert len(result.manifest) == result.images.shape[0]


def test_tiny_png_is_a_real_image():
    from PIL import Image

    with folder() as root:
        root.mkdir(parents=True)
        (root / "a.png").write_bytes(tiny_png(3))
        assert Image.open(root / "a.png").size == (16, 16)
    assert pd.Series([tiny_png(k) for k in range(10)]).is_unique

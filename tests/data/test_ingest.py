import numpy as np
import pytest
from PIL import Image

from mobiledx.data.intake import IngestError, ingest
from tests.support import ham_rows, write_ham10000


def test_ingest_rows_match_images_and_quarantine_explains_the_rest(tmp_path):
    rows = ham_rows(2)
    root = write_ham10000(tmp_path / "ham", rows)
    part1 = root / "HAM10000_images_part_1"
    (part1 / f"{rows[0]['image_id']}.jpg").write_bytes(b"")  # zero-byte file
    (part1 / f"{rows[2]['image_id']}.jpg").write_bytes(b"not a jpeg")
    # same content, conflicting labels: both copies refused
    (part1 / f"{rows[6]['image_id']}.jpg").write_bytes(
        (root / "HAM10000_images_part_1" / f"{rows[20]['image_id']}.jpg").read_bytes()
    )
    result = ingest(root, "ham10000", image_size=16, images_path=tmp_path / "images.npy", workers=2)

    why = dict(zip(result.quarantine["image_id"], result.quarantine["reason"]))
    assert "empty file" in why[rows[0]["image_id"]]
    assert why[rows[2]["image_id"]].startswith("unreadable")
    assert "conflicting labels" in why[rows[6]["image_id"]] and "conflicting labels" in why[rows[20]["image_id"]]
    assert len(result.manifest) + len(result.quarantine) == len(rows)
    assert result.images.shape == (len(result.manifest), 16, 16, 3)
    assert result.manifest["sha256"].is_unique


def test_ingested_pixels_follow_manifest_order(tmp_path):
    rows = ham_rows(1)
    root = write_ham10000(tmp_path / "ham", rows, folders=("imgs",))
    for i, row in enumerate(rows):  # encode the row number in the red channel
        Image.new("RGB", (30, 20), (i * 10, 0, 0)).save(root / "imgs" / f"{row['image_id']}.png")
        (root / "imgs" / f"{row['image_id']}.jpg").unlink()
    result = ingest(root, "ham10000", image_size=8, images_path=tmp_path / "images.npy", workers=1)
    expected = [int(image_id[-2:]) - 6 for image_id in result.manifest["image_id"]]  # ISIC_0024306 -> row 0
    assert list(result.images[:, 4, 4, 0] // 10) == expected


def test_same_label_duplicate_keeps_the_first_copy(tmp_path):
    rows = ham_rows(1)
    root = write_ham10000(tmp_path / "ham", rows, folders=("imgs",))
    first, second = rows[0]["image_id"], rows[1]["image_id"]  # same lesion, same label
    (root / "imgs" / f"{second}.jpg").write_bytes((root / "imgs" / f"{first}.jpg").read_bytes())
    result = ingest(root, "ham10000", image_size=8, images_path=tmp_path / "images.npy", workers=1)
    assert first in set(result.manifest["image_id"])
    assert result.quarantine.set_index("image_id").loc[second, "reason"] == f"duplicate content of {first} (same label)"


def test_raw_hash_tracks_content(tmp_path):
    root = write_ham10000(tmp_path / "ham", ham_rows(1))
    before = ingest(root, "ham10000", image_size=8, images_path=tmp_path / "images.npy", workers=1).raw_hash
    assert ingest(root, "ham10000", image_size=8, images_path=tmp_path / "images.npy", workers=1).raw_hash == before
    (root / "HAM10000_metadata.csv").write_text((root / "HAM10000_metadata.csv").read_text().replace("back", "face"))
    assert ingest(root, "ham10000", image_size=8, images_path=tmp_path / "images.npy", workers=1).raw_hash != before


def test_missing_raw_folder_names_the_fix(tmp_path):
    with pytest.raises(IngestError, match="does not exist. Fix: .*dvc add"):
        ingest(tmp_path / "nope", "ham10000", image_size=8, images_path=tmp_path / "images.npy")


def test_cnmc_ingest(cnmc_dir, tmp_path):
    result = ingest(cnmc_dir, "cnmc", image_size=12, images_path=tmp_path / "images.npy", workers=1)
    assert len(result.manifest) == 18 and result.quarantine.empty
    assert np.all(result.images[result.manifest["label"].to_numpy() == "all"][:, 6, 6, 0] > 130)


def test_ingest_never_reads_a_listed_path_outside_the_root(tmp_path, monkeypatch):
    """Defence in depth: even an adapter that lists `../` or absolute paths cannot make ingest read them."""
    from mobiledx.data import intake as ingest_module
    from mobiledx.data.adapters import scan_ham10000

    rows = ham_rows(1)
    root = write_ham10000(tmp_path / "ham", rows)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "secret.jpg")

    def careless_adapter(raw_dir, options):
        scan = scan_ham10000(raw_dir, options)
        scan.records.loc[0, "path"] = "../secret.jpg"
        scan.records.loc[1, "path"] = str(tmp_path / "secret.jpg")
        return scan

    monkeypatch.setattr(ingest_module, "get_adapter", lambda kind: careless_adapter)
    read = []
    real_decode = ingest_module.decode_file
    monkeypatch.setattr(ingest_module, "decode_file", lambda task: read.append(task[0]) or real_decode(task))
    result = ingest(root, "ham10000", image_size=16, images_path=tmp_path / "images.npy", workers=1)
    why = dict(zip(result.quarantine["path"], result.quarantine["reason"]))
    assert why["../secret.jpg"] == why[str(tmp_path / "secret.jpg")] == "path resolves outside the dataset root"
    assert not any("secret" in path for path in read) and len(read) == len(rows) - 2
    assert len(result.manifest) == len(rows) - 2 and not result.manifest["path"].str.contains("secret").any()


def test_worker_processes_ingest_exactly_what_one_process_does(tmp_path):
    """Enough images for the worker pool (hash and decode in chunks, in order): same manifest, quarantine,
    pixels and raw hash as ingesting in one process."""
    rows = ham_rows(5)
    root = write_ham10000(tmp_path / "ham", rows)
    part1 = root / "HAM10000_images_part_1"
    (part1 / f"{rows[2]['image_id']}.jpg").write_bytes(b"not a jpeg")
    (part1 / f"{rows[8]['image_id']}.jpg").write_bytes((part1 / f"{rows[6]['image_id']}.jpg").read_bytes())
    serial = ingest(root, "ham10000", image_size=12, images_path=tmp_path / "serial.npy", workers=1)
    parallel = ingest(root, "ham10000", image_size=12, images_path=tmp_path / "parallel.npy", workers=2)

    assert len(rows) >= 64 and len(serial.quarantine) == 2  # the unreadable file and the duplicate
    assert serial.manifest.equals(parallel.manifest) and serial.quarantine.equals(parallel.quarantine)
    assert (tmp_path / "serial.npy").read_bytes() == (tmp_path / "parallel.npy").read_bytes()
    assert serial.raw_hash == parallel.raw_hash
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ham", "parallel.npy", "serial.npy"]  # no table left behind


def test_an_adapter_error_in_the_scan_process_reaches_the_caller_as_it_was_raised(tmp_path):
    from mobiledx.data.adapters.registry import DatasetLayoutError

    root = write_ham10000(tmp_path / "ham", ham_rows(1))
    (root / "HAM10000_metadata.csv").write_text("image_id,age\nISIC_0024306,40\n")
    with pytest.raises(DatasetLayoutError, match=r"missing required column\(s\) \['lesion_id', 'dx'\]"):
        ingest(root, "ham10000", image_size=8, images_path=tmp_path / "out" / "images.npy", workers=1)
    assert list((tmp_path / "out").iterdir()) == []  # nothing left behind

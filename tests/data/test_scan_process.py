"""The scan runs in a forked process of its own (its memory peak ends with it): which adapters do, what comes
back through the pipe, and what the caller is told when the process fails or dies."""

import multiprocessing
import os
import re

import numpy as np
import pytest

from mobiledx.data import intake
from mobiledx.data.adapters import scan_ham10000, scan_medmnist
from mobiledx.data.adapters.registry import DatasetLayoutError
from mobiledx.data.intake import IngestError, NothingToIngestError, ingest
from mobiledx.data.manifest import IGNORED_COLUMNS, QUARANTINE_COLUMNS, ScanOptions
from tests.support import ham_rows, write_ham10000


@pytest.fixture
def forked_scan():
    """The scan in its own forked process, as ingest runs it: the mutation harness (benchmarks/mutation.py) runs
    it in the test process for every test that does not request this fixture. Skipped where there is no fork."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform: the scan runs in the ingesting process")


def _ingest(root, tmp_path, kind="ham10000"):
    return ingest(root, kind, 8, tmp_path / "out" / "images.npy", workers=1)


def _where_scanned(tmp_path, adapter):
    """``adapter`` wrapped to write the process it ran in (id and name) to a file, and that file."""
    seen = tmp_path / "scanned-in.txt"

    def spying(raw_dir, options):
        seen.write_text(f"{os.getpid()} {multiprocessing.current_process().name}")
        return adapter(raw_dir, options)

    return spying, seen


def test_an_adapter_scans_in_a_process_of_its_own_named_scan(forked_scan, tmp_path, monkeypatch):
    spying, seen = _where_scanned(tmp_path, scan_ham10000)  # a plain function: no ``arrays`` attribute
    monkeypatch.setattr(intake, "get_adapter", lambda kind: spying)
    result = _ingest(write_ham10000(tmp_path / "ham", ham_rows(1)), tmp_path)
    pid, name = seen.read_text().split()
    assert int(pid) != os.getpid() and name == "scan"
    assert len(result.manifest) == 14 and result.grouping == "grouped by lesion (7 lesions)"


def test_without_fork_the_scan_runs_in_the_ingesting_process(forked_scan, tmp_path, monkeypatch):
    spying, seen = _where_scanned(tmp_path, scan_ham10000)
    monkeypatch.setattr(intake, "get_adapter", lambda kind: spying)
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    result = _ingest(write_ham10000(tmp_path / "ham", ham_rows(1)), tmp_path)
    assert seen.read_text().split()[0] == str(os.getpid())
    assert len(result.manifest) == 14 and result.grouping == "grouped by lesion (7 lesions)"


def test_an_adapter_that_returns_the_pixels_scans_in_the_ingesting_process(forked_scan, tmp_path, monkeypatch):
    root = tmp_path / "derma"
    root.mkdir()
    images = np.stack([np.full((28, 28, 3), 30 * k, np.uint8) for k in range(4)])
    np.savez(root / "dermamnist.npz", train_images=images, train_labels=np.array([[0], [1], [2], [1]]))
    spying, seen = _where_scanned(tmp_path, scan_medmnist)
    spying.arrays = True  # as @register("medmnist", arrays=True) marks it
    monkeypatch.setattr(intake, "get_adapter", lambda kind: spying)
    result = _ingest(root, tmp_path, kind="medmnist")
    assert seen.read_text().split()[0] == str(os.getpid())
    assert result.manifest["image_id"].tolist() == [f"train_{k:06d}" for k in range(4)]
    assert result.grouping == "grouped by image (4 images)"
    assert result.images[:, 0, 0, 0].tolist() == [0, 30, 60, 90]


def test_an_error_in_the_scan_process_is_raised_here_with_the_scan_process_traceback(forked_scan, tmp_path):
    root = write_ham10000(tmp_path / "ham", ham_rows(1))
    (root / "HAM10000_metadata.csv").write_text("image_id,age\nISIC_0024306,40\n")
    with pytest.raises(DatasetLayoutError) as raised:
        _ingest(root, tmp_path)
    assert str(raised.value) == (f"{root / 'HAM10000_metadata.csv'}: missing required column(s) ['lesion_id', 'dx'] "
                                 f"of the HAM10000 metadata; found ['image_id', 'age']. Fix: use the HAM10000 metadata "
                                 f"file as distributed")
    [note] = raised.value.__notes__
    assert note.startswith("Traceback (most recent call last):\n  File ") and ", in scan_ham10000\n" in note
    assert note.endswith(f"DatasetLayoutError: {raised.value}")


class _Pipe(list):
    """What the scan process sends, kept."""

    def send(self, outcome):
        self.append(outcome)


def test_the_scan_process_sends_its_scan_or_its_error_with_the_traceback(tmp_path):
    root = write_ham10000(tmp_path / "ham", ham_rows(1))
    sent = _Pipe()
    intake._send_scan(sent, scan_ham10000, root, ScanOptions(), "auto", tmp_path / "table.arrow")
    [scan] = sent
    assert isinstance(scan, intake._Scan) and len(scan.records) == 14 and scan.grouping == "grouped by lesion (7 " \
                                                                                           "lesions)"
    (root / "HAM10000_metadata.csv").write_text("image_id,age\nISIC_0024306,40\n")
    sent = _Pipe()
    intake._send_scan(sent, scan_ham10000, root, ScanOptions(), "auto", tmp_path / "table.arrow")
    [error] = sent
    assert isinstance(error, DatasetLayoutError) and "missing required column(s) ['lesion_id', 'dx']" in str(error)
    [note] = error.__notes__
    assert note.startswith("Traceback (most recent call last):\n  File ") and ", in scan_ham10000\n" in note
    assert note.endswith(f"DatasetLayoutError: {error}")


def test_nothing_left_crosses_from_the_scan_process_with_its_tables(forked_scan, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.txt").write_text("no images yet")
    with pytest.raises(NothingToIngestError) as raised:
        _ingest(tmp_path / "empty", tmp_path, kind="folder")
    assert str(raised.value).startswith(f"{tmp_path / 'empty'}: no image found, and no metadata row or file was "
                                        f"refused. Fix: ")
    assert list(raised.value.quarantine.columns) == QUARANTINE_COLUMNS and raised.value.quarantine.empty
    assert list(raised.value.ignored.columns) == IGNORED_COLUMNS and raised.value.ignored["path"].tolist() == [
        "README.txt"]


def test_a_scan_process_that_dies_is_named_with_its_exit_status(forked_scan, tmp_path, monkeypatch):
    ingesting = os.getpid()

    def dying(raw_dir, options):
        if os.getpid() == ingesting:  # never end the test's own process
            raise RuntimeError("the scan ran in the ingesting process")
        os._exit(3)

    monkeypatch.setattr(intake, "get_adapter", lambda kind: dying)
    root = write_ham10000(tmp_path / "ham", ham_rows(1))
    with pytest.raises(IngestError) as raised:
        _ingest(root, tmp_path)
    # The exit status is read before the process is joined, so it often shows as None (reported: intake._scan_apart)
    stopped = re.fullmatch(rf"scanning {re.escape(str(root))} stopped \(the scan process exited with (3|None)\), "
                           rf"often for lack of memory\. Fix: free memory and run the stage again", str(raised.value))
    assert stopped is not None, str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__

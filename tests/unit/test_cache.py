"""The image cache is read through a memory map, batch by batch, with bounded resident memory."""

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from mobiledx.data.cache import ImageStack, MappedImages, RowView


def _mapped_resident_kib(path: Path) -> int:
    """Resident KiB of this process's mappings of ``path`` (from /proc/self/smaps): the cache pages the
    reader holds, whatever the rest of the process (libraries, other files, the heap) does meanwhile."""
    path = str(Path(path).resolve())
    resident, in_mapping, found = 0, False, False
    for line in open("/proc/self/smaps"):
        field = line.split(maxsplit=1)[0]
        if not field.endswith(":"):  # a mapping's header: "start-end perms offset dev inode [path]"
            in_mapping = line.rstrip("\n").endswith(" " + path)
            found |= in_mapping
        elif in_mapping and field == "Rss:":
            resident += int(line.split()[1])
    if not found:
        pytest.fail(f"{path} is not memory-mapped by this process")
    return resident


def test_the_cache_is_memory_mapped_not_loaded(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", array)
    images = MappedImages(tmp_path / "images.npy")
    assert isinstance(images._array, np.memmap) and images._array.mode == "r"
    assert images.shape == (20, 8, 8, 3) and len(images) == 20
    batch = images[np.array([3, 1, 7])]
    assert type(batch) is np.ndarray and np.array_equal(batch, array[[3, 1, 7]])
    batch[:] = 0  # a copy: the file is untouched
    assert np.array_equal(images[1:4], array[1:4]) and np.array_equal(
        images[array[:, 0, 0, 0] > 128], array[array[:, 0, 0, 0] > 128]
    )
    with pytest.raises(TypeError, match="index it"):
        np.asarray(images)  # a whole-file load is refused, never silently done


def test_reading_the_whole_cache_keeps_resident_memory_bounded(tmp_path):
    rows, size = 96, 256  # 96 images of 192 KiB: an 18 MiB file
    data = np.random.default_rng(1).integers(0, 256, (rows, size, size, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", data)
    del data

    def growth(release_bytes: int) -> int:
        images = MappedImages(tmp_path / "images.npy", release_bytes=release_bytes)
        before = _mapped_resident_kib(tmp_path / "images.npy")
        for start in range(0, rows, 8):
            images[np.arange(start, start + 8)]
        return _mapped_resident_kib(tmp_path / "images.npy") - before

    file_kib = rows * size * size * 3 // 1024
    assert growth(release_bytes=1 << 40) > 0.8 * file_kib  # without release, every page read stays resident
    assert growth(release_bytes=2 << 20) < 0.3 * file_kib  # released every 2 MiB: bounded by the batches


def test_reading_the_whole_cache_allocates_batches_not_the_file(tmp_path):
    """What the reader allocates (NumPy reports its buffers to tracemalloc): a copy of the file would show here,
    whatever the page cache holds."""
    rows, size = 96, 256  # an 18 MiB file, read 8 images (1.5 MiB) at a time
    np.save(tmp_path / "images.npy", np.zeros((rows, size, size, 3), np.uint8))
    file_bytes = rows * size * size * 3

    def peak_allocated(read) -> int:
        tracemalloc.start()
        try:
            read()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def read_in_batches():
        images = MappedImages(tmp_path / "images.npy")
        for start in range(0, rows, 8):
            images[np.arange(start, start + 8)]

    assert peak_allocated(lambda: np.load(tmp_path / "images.npy")) >= file_bytes  # a whole-file load is seen
    assert peak_allocated(read_in_batches) < 0.3 * file_bytes


def test_empty_cache_and_pickles(tmp_path):
    np.save(tmp_path / "empty.npy", np.zeros((0, 4, 4, 3), np.uint8))
    empty = MappedImages(tmp_path / "empty.npy")
    assert len(empty) == 0 and empty[np.array([], int)].shape == (0, 4, 4, 3)
    empty.release()
    np.save(tmp_path / "floats.npy", np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        MappedImages(tmp_path / "floats.npy")


def test_image_stack_addresses_two_caches_as_one_without_concatenating(tmp_path):
    first = np.arange(3, dtype=np.uint8)[:, None, None, None] * np.ones((3, 2, 2, 3), np.uint8)
    second = (10 + np.arange(2, dtype=np.uint8))[:, None, None, None] * np.ones((2, 2, 2, 3), np.uint8)
    np.save(tmp_path / "a.npy", first)
    np.save(tmp_path / "b.npy", second)
    stack = ImageStack([MappedImages(tmp_path / "a.npy"), MappedImages(tmp_path / "b.npy")])
    assert stack.shape == (5, 2, 2, 3) and len(stack) == 5
    assert stack[np.array([4, 0, 3, 2])][:, 0, 0, 0].tolist() == [11, 0, 10, 2]
    with pytest.raises(IndexError):
        stack[np.array([5])]


def test_row_view_reads_lazily_in_row_order():
    reads = []

    class Recording:
        shape = (10, 1, 1, 3)

        def __getitem__(self, rows):
            reads.append(np.asarray(rows).tolist())
            return np.asarray(rows)[:, None, None, None] * np.ones((1, 1, 1, 3), np.uint8)

    view = RowView(Recording(), np.array([9, 4, 7]))
    assert reads == [] and len(view) == 3 and view.shape == (3, 1, 1, 3)
    assert view[1:3][:, 0, 0, 0].tolist() == [4, 7] and view[0][0, 0, 0] == 9
    assert reads == [[4, 7], [9]]

"""Reading ingest's outputs back: the cached image array, the manifest and the split assignment.

The image cache (``images.npy``, and rebalance's ``augmented.npy``) is never loaded whole: it is
read through a read-only memory map (:class:`MappedImages`), rows are copied out batch by batch,
and the pages a read touched are handed back to the page cache regularly. A stage's memory is
then bounded by its batches, whatever the dataset's size.
"""

from __future__ import annotations

import mmap
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mobiledx.data.manifest import read_manifest
from mobiledx.io import read_json
from mobiledx.paths import DatasetPaths

RELEASE_BYTES = 64 << 20  # pages read are given back to the page cache after this many bytes


class MappedImages:
    """A cached ``(N, size, size, 3)`` uint8 image array, read through a read-only memory map.

    Indexing (``images[rows]``, ``images[a:b]``, ``images[mask]``) returns a copy in an ordinary
    array. Mapped pages that reads touched stay in the page cache but are released from this
    process (``madvise(MADV_DONTNEED)``) every :data:`RELEASE_BYTES`, so resident memory does not
    grow with the file while a training reads it epoch after epoch. Thread-safe (``tf.data``
    gathers batches in parallel).
    """

    def __init__(self, path: str | Path, release_bytes: int = RELEASE_BYTES) -> None:
        self.path = Path(path)
        try:
            self._array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except ValueError as error:
            if "object" in str(error).lower() or "pickle" in str(error).lower():
                raise ValueError(f"{self.path} holds Python objects, not uint8 pixels: refusing to load it "
                                 f"(allow_pickle=False: no pickles are ever loaded)") from error
            raise
        if self._array.dtype != np.uint8 or self._array.ndim != 4:
            raise ValueError(f"{self.path}: expected (N, size, size, 3) uint8 pixels, got {self._array.dtype} "
                             f"{self._array.shape}")
        self.release_bytes = int(release_bytes)
        self._read_since_release = 0
        self._lock = threading.Lock()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._array.shape)

    @property
    def dtype(self) -> np.dtype:
        return self._array.dtype

    @property
    def ndim(self) -> int:
        return self._array.ndim

    def __len__(self) -> int:
        return len(self._array)

    def __getitem__(self, index) -> np.ndarray:
        block = np.array(self._array[index])  # always a copy, never a view of the map
        with self._lock:
            self._read_since_release += block.nbytes
            due = self._read_since_release >= self.release_bytes
            if due:
                self._read_since_release = 0
        if due:
            self.release()
        return block

    def release(self) -> None:
        """Drop the mapped pages from this process's resident set (they stay in the page cache)."""
        handle = getattr(self._array, "_mmap", None)
        if handle is not None and len(self._array):
            handle.madvise(mmap.MADV_DONTNEED)

    def __array__(self, dtype=None, copy=None):
        raise TypeError(f"{self.path.name} is a memory-mapped image cache: index it (images[rows]) instead of "
                        f"converting the whole file to an array")


class ImageStack:
    """Several image caches addressed as one: row ``i`` of the second follows the last row of the first.

    The train stage reads the ingested images and rebalance's offline-augmented ones this way,
    without concatenating them.
    """

    def __init__(self, parts: list) -> None:
        if not parts:
            raise ValueError("an image stack needs at least one image array")
        shapes = {tuple(part.shape[1:]) for part in parts if len(part)}
        if len(shapes) > 1:
            raise ValueError(f"image arrays of different image shapes cannot be stacked: {sorted(shapes)}")
        self.parts = list(parts)
        self._starts = np.cumsum([0] + [len(part) for part in parts])

    @property
    def shape(self) -> tuple[int, ...]:
        return (int(self._starts[-1]), *self.parts[0].shape[1:])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1:
            raise TypeError("an image stack is indexed with a 1-D array of rows")
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows outside 0..{len(self) - 1}")
        out = np.empty((len(rows), *self.shape[1:]), np.uint8)
        part_of = np.searchsorted(self._starts, rows, side="right") - 1
        for part in np.unique(part_of):
            chosen = part_of == part
            out[chosen] = self.parts[part][rows[chosen] - self._starts[part]]
        return out


class RowView:
    """The images ``images[rows]`` as a lazy sequence: nothing is read until an item or slice is asked for."""

    def __init__(self, images, rows: np.ndarray) -> None:
        self.images = images
        self.rows = np.asarray(rows, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.images.shape[1:])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index) -> np.ndarray:
        picked = self.rows[index]
        if np.ndim(picked) == 0:
            return self.images[np.array([picked])][0]
        return self.images[picked]


@dataclass
class IngestedDataset:
    """One dataset as ingest left it, plus its split assignment."""

    name: str
    info: dict  # ingest's dataset.json: kind, classes, image_size, raw_hash, counts
    manifest: pd.DataFrame
    images: MappedImages  # (N, size, size, 3) uint8, row i <-> manifest row i
    assignment: pd.DataFrame  # image_id, group_id, label, split

    @property
    def classes(self) -> list[str]:
        return list(self.info["classes"])

    def rows(self, image_ids: pd.Series) -> np.ndarray:
        """Positions in ``images`` of the given image ids (a clear error for unknown ids)."""
        position = pd.Series(np.arange(len(self.manifest)), index=self.manifest["image_id"])
        missing = set(image_ids) - set(position.index)
        if missing:
            raise KeyError(f"{self.name}: {len(missing)} image id(s) not in the manifest, e.g. {sorted(missing)[:3]}")
        return position.loc[image_ids].to_numpy()

    def split(self, name: str) -> pd.DataFrame:
        return self.assignment[self.assignment["split"] == name].reset_index(drop=True)

    def class_indices(self, labels: pd.Series) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[label] for label in labels], dtype=np.int64)


def load_ingested(paths: DatasetPaths) -> IngestedDataset:
    """``data/ingested/<name>`` (images memory-mapped, see :class:`MappedImages`) and its ``split.csv``."""
    return IngestedDataset(
        name=paths.name,
        info=read_json(paths.dataset_info),
        manifest=read_manifest(paths.manifest),
        images=MappedImages(paths.images),
        assignment=pd.read_csv(paths.assignment, dtype=str, keep_default_na=False),
    )

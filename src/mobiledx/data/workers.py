"""Ingest's per-file work (hash, decode) and the worker processes that run it, in order, a few files at a time."""

from __future__ import annotations

import ctypes
import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, wait
from itertools import islice
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mobiledx.data.images import UnreadableImageError, device_resize, read_frame

CHUNK_SIZE = 8  # tasks per worker call: the same few images in flight whatever the dataset's size
IN_FLIGHT = 3  # chunks queued per worker
PARALLEL_FROM = 64  # fewer tasks than this run in the calling process (starting workers costs more)

# (pixels or None, error or None, original (width, height), the source image mode it was converted from)
Decoded = tuple[np.ndarray | None, str | None, tuple[int, int], str]


def hash_file(path: str) -> bytes:
    """The SHA-256 digest (32 bytes) of one file."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").digest()


def decode_file(task: tuple[str, int]) -> Decoded:
    """Decode one file to ``size`` px (see :data:`Decoded`)."""
    path, size = task
    data = Path(path).read_bytes()
    if not data:
        return None, "empty file (0 bytes)", (0, 0), ""
    try:
        frame = read_frame(data)
    except UnreadableImageError as error:
        return None, str(error), (0, 0), ""
    return device_resize(frame.pixels, size), None, (frame.pixels.shape[1], frame.pixels.shape[0]), frame.mode


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD = 128 * 1024  # glibc's default starting value


def map_large_blocks() -> None:
    """Serve every block of 128 KiB or more (decoded images, pickled results) with its own memory map,
    given back to the system when freed, in this process and those it forks from now on.

    glibc starts that way, but raises the threshold after the first such block is freed, then serves
    them from its heaps, which keep what they free: ingest's main process grew by about 25 MiB over a
    30,000-image decode. Setting the threshold explicitly keeps it fixed. It costs a system call per
    block: worth it for the main process, not for the decode workers (it halved their speed). Nothing
    to do where the C library has no ``mallopt`` (macOS, musl).
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def _run_chunk(function: Callable, tasks: list) -> list:
    return [function(task) for task in tasks]


class Workers:
    """``count`` worker processes for hashing and decoding, one pool for both, started on entering.

    Started before the dataset is scanned, a forked worker holds none of the main process's tables:
    forked later it would share them, and every page the main process then touches would be copied
    into it, so each worker's memory would grow with the dataset. A context manager; ``count <= 1``
    runs everything in the calling process.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Workers:
        if self.count > 1:
            self._pool = ProcessPoolExecutor(max_workers=self.count)
            wait([self._pool.submit(int) for _ in range(self.count)])  # the processes start now
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def map(self, function: Callable, tasks: Iterable, total: int, description: str) -> Iterator:
        """``function`` over ``tasks`` (an iterable of ``total`` items), results in order, with a progress bar.

        At most :data:`IN_FLIGHT` chunks of :data:`CHUNK_SIZE` tasks per worker are queued, so memory
        is bounded by them (a plain ``pool.map`` would hold every task and every finished result), and
        ``tasks`` is consumed as it goes.
        """
        progress = tqdm(total=total, desc=description, unit="img", mininterval=2.0)
        tasks = iter(tasks)
        if self._pool is None or total < PARALLEL_FROM:
            for task in tasks:
                yield function(task)
                progress.update()
            progress.close()
            return
        chunks = iter(lambda: list(islice(tasks, CHUNK_SIZE)), [])
        pending = deque(self._pool.submit(_run_chunk, function, chunk)
                        for chunk in islice(chunks, self.count * IN_FLIGHT))
        while pending:
            results = pending.popleft().result()
            following = next(chunks, None)
            if following is not None:
                pending.append(self._pool.submit(_run_chunk, function, following))
            yield from results
            progress.update(len(results))
        progress.close()

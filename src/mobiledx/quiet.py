"""Quiet stage output: known, harmless noise from the native (C++) runtimes is filtered out.

TensorFlow's and LiteRT's C++ code writes to the process's file descriptors directly, past Python's
``warnings`` and ``logging`` and past ``TF_CPP_MIN_LOG_LEVEL`` for what it logs before absl is
initialised: every stage would print lines like ``E0000 ... NodeDef mentions attribute
use_unbounded_threadpool`` (a benign tf.data rewrite message) or the converter's
``fully_quantize: 0, inference_type: 6 ...``. :func:`filter_native_output` routes file descriptors
1 and 2 through a filter that drops exactly the lines in :data:`NOISE` and passes everything else
through unchanged, progress bars included.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

NOISE = tuple(re.compile(pattern) for pattern in (
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    r"^[IWE]\d{4} [\d:. ]+\s+\d+ port\.cc:\d+\] oneDNN custom operations are on",
    r"^[IWE]\d{4} [\d:. ]+\s+\d+ cpu_feature_guard\.cc:\d+\]",
    r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.$",
    r"^E\d{4} [\d:. ]+\s+\d+ node_def_util\.cc:\d+\] NodeDef mentions attribute use_unbounded_threadpool",
    r"^fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, output_inference_type: \w+$",
    r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$",
))


def is_noise(line: str) -> bool:
    return any(pattern.search(line) for pattern in NOISE)


class _Filter:
    """One file descriptor routed through a pipe; a thread forwards all but the noise lines."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.original = os.dup(fd)
        read_end, write_end = os.pipe()
        os.dup2(write_end, fd)
        os.close(write_end)
        self.read_end = read_end
        self.thread = threading.Thread(target=self._forward, name=f"mobiledx-quiet-{fd}", daemon=True)
        self.thread.start()

    def _write(self, data: bytes) -> None:
        while data:
            data = data[os.write(self.original, data):]

    def _forward(self) -> None:
        pending = b""
        while True:
            chunk = os.read(self.read_end, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            self._write(b"".join(line + b"\n" for line in lines if not is_noise(line.decode(errors="replace"))))
            if b"\r" in pending:  # a progress bar redrawing its line: show it now
                shown, _, pending = pending.rpartition(b"\r")
                self._write(shown + b"\r")
        if pending and not is_noise(pending.decode(errors="replace")):
            self._write(pending)

    def close(self) -> None:
        os.dup2(self.original, self.fd)  # the pipe's last writer in this process is gone: the thread drains it
        self.thread.join(timeout=5)
        os.close(self.read_end)
        os.close(self.original)


_FILTERS: list[_Filter] = []


def filter_native_output() -> None:
    """Filter :data:`NOISE` out of this process's stdout and stderr until it exits (idempotent)."""
    if _FILTERS or os.environ.get("MOBILEDX_VERBOSE"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    _FILTERS.extend(_Filter(fd) for fd in (1, 2))
    atexit.register(_close)


def _close() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    while _FILTERS:
        _FILTERS.pop().close()

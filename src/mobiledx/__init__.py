"""mobiledx: raw medical image collections to small on-device classifiers (.tflite)."""

__version__ = "0.1.0"

import os as _os

# Quieter, offline-friendly defaults for the libraries the stages import (a user's setting wins).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
_os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# pandas keeps text in Arrow arrays; Arrow's default allocator (mimalloc) keeps the memory it frees for reuse,
# so a process stays at its highest point. The system allocator gives it back (ingest's peak at 30,000
# images: 0.16 -> 0.14 GiB in benchmarks/memory_scaling.py).
_os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

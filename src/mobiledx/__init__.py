"""mobiledx: raw medical image collections to small on-device classifiers (.tflite)."""

__version__ = "0.1.0"

import os as _os

# Quieter, offline-friendly defaults for the libraries the stages import (a user's setting wins).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
_os.environ.setdefault("DVC_NO_ANALYTICS", "1")

"""Dataset adapters: read a raw dataset exactly as it is distributed into manifest records.

An adapter is a function ``scan(raw_dir) -> ScanResult`` in its own module of this package,
registered under a *kind* (the value used in params.yaml) with :func:`register`. It lists images
and their labels/metadata without decoding pixels; every file or metadata row it cannot use
becomes a quarantine entry with its reason (nothing is dropped silently). Decoding, hashing and
resizing happen afterwards in :mod:`mobiledx.data.intake`. To add a layout, add a module here and
import it below.
"""

from mobiledx.data.adapters.cnmc import CNMC_CLASSES, scan_cnmc
from mobiledx.data.adapters.folder import scan_class_folders
from mobiledx.data.adapters.ham10000 import HAM10000_CLASSES, scan_ham10000
from mobiledx.data.adapters.isic import ISIC_CLASSES, scan_isic
from mobiledx.data.adapters.isic_archive import scan_isic2019, scan_isic2020, scan_isic_archive
from mobiledx.data.adapters.medmnist import scan_medmnist
from mobiledx.data.adapters.registry import get_adapter, known_kinds, register

__all__ = [
    "CNMC_CLASSES", "HAM10000_CLASSES", "ISIC_CLASSES", "get_adapter", "known_kinds", "register",
    "scan_class_folders", "scan_cnmc", "scan_ham10000", "scan_isic", "scan_isic2019", "scan_isic2020",
    "scan_isic_archive", "scan_medmnist",
]

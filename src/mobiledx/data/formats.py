"""The on-disk formats of the datasets as distributed: file names, columns and vocabularies.

The adapters read these formats and the demo generator writes them, both from these constants.
"""

from __future__ import annotations

import re

# HAM10000 (Tschandl et al. 2018)
HAM10000_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
HAM10000_METADATA_FILE = "HAM10000_metadata.csv"
HAM10000_COLUMNS = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]  # as distributed
HAM10000_REQUIRED_COLUMNS = ["lesion_id", "image_id", "dx"]
HAM10000_PART_FOLDER = "HAM10000_images_part_{part}"  # the release's two image archives, part 1 and 2
HAM10000_FIRST_IMAGE = 24306  # ISIC_0024306 is the release's first image
HAM10000_IMAGES_PER_PART = 5000  # part 1 holds ISIC_0024306 .. ISIC_0029305, part 2 the remaining 5,015

# C-NMC 2019 (leukaemia single-cell crops)
CNMC_CLASSES = ["all", "hem"]
CNMC_FILE_NAME = re.compile(r"^UID_(H?)(\d+)_(\d+)_(\d+)_(all|hem)$", re.IGNORECASE)
CNMC_TEST_LABELS = {"1": "all", "0": "hem"}


def cnmc_file_name(subject: str, image: int, cell: int, label: str) -> str:
    """A training file's name in C-NMC's grammar: ``UID_<subject>_<image>_<cell>_<label>.bmp`` (healthy
    subjects' tokens start with ``H``, e.g. ``UID_H10_43_1_hem.bmp``); :data:`CNMC_FILE_NAME` parses it."""
    return f"UID_{subject}_{int(image)}_{int(cell)}_{label}.bmp"

"""C-NMC 2019 (leukaemia single-cell crops): training folds and preliminary-test set, grouped by subject."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pandas as pd

from mobiledx.data.adapters.registry import DatasetLayoutError, Quarantine, index_images, records_frame, register
from mobiledx.data.formats import CNMC_CLASSES, CNMC_FILE_NAME, CNMC_TEST_LABELS
from mobiledx.data.manifest import ScanOptions, ScanResult


def _cnmc_subject(name: str) -> tuple[str, str] | None:
    """(group id, label) from a C-NMC file name; the healthy subjects' ``H`` prefix is stripped."""
    match = CNMC_FILE_NAME.match(Path(name).stem)
    return (f"subject_{int(match.group(2))}", match.group(5).lower()) if match else None


@register("cnmc")
def scan_cnmc(raw_dir: Path, options: ScanOptions = ScanOptions()) -> ScanResult:
    """C-NMC 2019: ``fold_k/{all,hem}/UID_<subject>_<image>_<cell>_<label>.bmp`` training folds,
    plus, when present, the preliminary-test images (``1.bmp`` ...) with their labels CSV
    (columns ``Patient_ID, new_names, labels``; 1 = ALL, 0 = HEM), kept as ``source_split=test``.

    The subject id is the first token of the original file name; the label comes from the class
    folder (training) or the CSV (test) and must agree with the file name's suffix. Subjects are the
    patients (``patient_id``).
    """
    raw_dir = Path(raw_dir)
    quarantine = Quarantine()
    label_files = sorted(p for p in raw_dir.rglob("*.csv") if "label" in p.name.lower())
    images = index_images(raw_dir, quarantine, metadata=tuple(label_files))
    test_names = {}
    for label_file in label_files:
        table = pd.read_csv(label_file, dtype=str, keep_default_na=False)
        missing = {"Patient_ID", "new_names", "labels"} - set(table.columns)
        if missing:
            raise DatasetLayoutError(f"{label_file}: missing column(s) {sorted(missing)}; found {list(table.columns)}. "
                                     f"Fix: use the preliminary-test labels CSV as distributed")
        test_names.update({Path(row.new_names).stem: row for row in table.itertuples(index=False)})

    records = []
    for stem, files in images.groupby("stem")["path"]:
        for relative in files:
            path = PurePosixPath(relative)
            folder = path.parent.name.lower()
            in_fold = folder in CNMC_CLASSES and path.parent.parent.name.lower().startswith("fold_")
            if len(files) > 1:
                quarantine.add(stem, relative, "several files share this image id")
                continue
            if in_fold:
                parsed = _cnmc_subject(stem)
                if parsed is None:
                    quarantine.add(stem, relative, "file name does not follow UID_<subject>_<image>_<cell>_<label>")
                    continue
                if parsed[1] != folder:
                    quarantine.add(stem, relative, f"file name says {parsed[1]!r} but folder says {folder!r}")
                    continue
                group, label, source = parsed[0], folder, "train"
            elif stem in test_names:
                row = test_names[stem]
                parsed = _cnmc_subject(row.Patient_ID)
                label = CNMC_TEST_LABELS.get(str(row.labels).strip())
                if parsed is None or label is None or parsed[1] != label:
                    quarantine.add(
                        stem, relative, f"labels CSV row is inconsistent: {row.Patient_ID!r}, label {row.labels!r}"
                    )
                    continue
                group, source = parsed[0], "test"
            else:
                quarantine.add(stem, relative, "neither in a fold_k/{all,hem}/ class folder nor in a labels CSV")
                continue
            records.append(
                {
                    "image_id": stem,
                    "path": relative,
                    "label": label,
                    "lesion_id": "",
                    "patient_id": group,
                    "age": "",
                    "sex": "unknown",
                    "site": "unknown",
                    "source_split": source,
                }
            )
    for stem in sorted(set(test_names) - set(images["stem"])):
        quarantine.add(stem, "", "listed in the labels CSV but no file found")
    return ScanResult(records=records_frame(records), quarantine=quarantine.frame(), classes=list(CNMC_CLASSES))

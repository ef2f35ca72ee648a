"""C-NMC 2019 (leukaemia single-cell crops): training folds and preliminary-test set, grouped by subject."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from mobiledx.data.adapters.registry import (
    Quarantine,
    companion_reason,
    dataset_files,
    index_images,
    nfc,
    read_table,
    register,
)
from mobiledx.data.formats import CNMC_CLASSES, CNMC_FILE_NAME, CNMC_TEST_LABELS
from mobiledx.data.manifest import ScanOptions, ScanResult


def _cnmc_subject(name: str) -> tuple[str, str] | None:
    """(group id, label) from a C-NMC file name; the healthy subjects' ``H`` prefix is stripped."""
    match = CNMC_FILE_NAME.match(Path(name).stem)
    return (f"subject_{int(match.group(2))}", match.group(5).lower()) if match else None


def _test_label(row: dict) -> tuple[tuple[str, str] | None, str | None]:
    """``((group id, label), None)`` from a preliminary-test labels CSV row, or ``(None, why)``: the values
    that cannot be read, or that contradict each other, named."""
    patient, raw = row["Patient_ID"].strip(), row["labels"].strip()
    parsed = _cnmc_subject(patient)
    try:
        label = CNMC_TEST_LABELS.get(str(int(float(raw)))) if raw and float(raw).is_integer() else None
    except ValueError:
        label = None
    if parsed is None:
        return None, (f"labels CSV: Patient_ID {patient!r} does not follow "
                      f"UID_<subject>_<image>_<cell>_<all|hem>")
    if label is None:
        return None, f"labels CSV: labels {raw!r} is not 1 (ALL) or 0 (HEM)"
    if parsed[1] != label:
        return None, (f"labels CSV contradicts itself: labels {raw!r} ({label}) but Patient_ID {patient!r} "
                      f"({parsed[1]}). Which is right is unknown")
    return (parsed[0], label), None


@register("cnmc")
def scan_cnmc(raw_dir: Path, options: ScanOptions = ScanOptions()) -> ScanResult:
    """C-NMC 2019: ``fold_k/{all,hem}/UID_<subject>_<image>_<cell>_<label>.bmp`` training folds,
    plus, when present, the preliminary-test images (``1.bmp`` ...) with their labels CSV
    (columns ``Patient_ID, new_names, labels``; 1 = ALL, 0 = HEM), kept as ``source_split=test``.

    The subject id is the first token of the original file name; the label comes from the class
    folder (training) or the CSV (test) and must agree with the file name's suffix. Subjects are the
    patients (``patient_id``). A test image listed twice, or whose row contradicts itself, is refused.
    """
    raw_dir = Path(raw_dir)
    quarantine = Quarantine()
    label_files = sorted(raw_dir / f for f in dataset_files(raw_dir)
                         if f.lower().endswith(".csv") and "label" in f.rsplit("/", 1)[-1].lower()
                         and companion_reason(f) is None)
    images = index_images(raw_dir, quarantine, metadata=tuple(label_files), collapse_copies=True)
    listings: dict[str, list[tuple[dict | None, str | None]]] = {}  # test image stem -> (row, unreadable reason)
    for label_file in label_files:
        table, unreadable = read_table(label_file, ["Patient_ID", "new_names", "labels"], "the preliminary-test "
                                       "labels", quarantine, id_column="new_names",
                                       fix="use the preliminary-test labels CSV as distributed")
        for row in table.to_dict("records"):
            listings.setdefault(nfc(Path(row["new_names"].strip()).stem), []).append((row, None))
        for name, reasons in unreadable.items():
            for reason in reasons:
                listings.setdefault(nfc(Path(name).stem), []).append((None, reason))

    records = []
    for stem, files in images.groupby("stem")["path"]:
        for relative in files:
            path = PurePosixPath(relative)
            folder = path.parent.name.lower()
            in_fold = folder in CNMC_CLASSES and path.parent.parent.name.lower().startswith("fold_")
            if len(files) > 1:
                quarantine.add(stem, relative, "several different files for one image id")
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
            elif stem in listings:
                rows = listings[stem]
                if len(rows) > 1:
                    quarantine.add(stem, relative, f"image listed {len(rows)} times in the labels CSV: which row "
                                                   f"describes it is unknown")
                    continue
                row, why = rows[0]
                if why is None:
                    parsed, why = _test_label(row)
                if why is not None:
                    quarantine.add(stem, relative, why)
                    continue
                (group, label), source = parsed, "test"
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
    for stem in sorted(set(listings) - set(images["stem"])):
        for _ in listings[stem]:
            quarantine.add(stem, "", "listed in the labels CSV but no file found")
    return quarantine.result(records, list(CNMC_CLASSES))

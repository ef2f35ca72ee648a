"""ISIC Archive downloads (``isic image download OUTDIR``) and the ISIC 2019 and 2020 challenge training sets.

- ``isic_archive``: what the official ``isic-cli`` writes: ``<isic_id>.jpg`` (or ``.png``/``.tif``) files
  flat in the folder, ``metadata.csv`` (``isic_id, attribution, copyright_license``, then the fields the
  download holds, sorted: ``diagnosis_1..5``, ``lesion_id``, ``patient_id``, ``age_approx``, ``sex``,
  ``anatom_site_1..5`` ...), ``attribution.txt`` and ``licenses/``. The label is the column
  ``datasets.<name>.labels.column`` (default ``diagnosis_1``: Benign / Indeterminate / Malignant),
  mapped with ``labels.map``. Older downloads have ``anatom_site_general`` (removed 2026-04) and
  ``benign_malignant`` (removed 2025-06): both are still read.
- ``isic2019``: ``ISIC_2019_Training_Input/*.jpg``, the one-hot ``ISIC_2019_Training_GroundTruth.csv``
  (``image, MEL, NV, BCC, AK, BKL, DF, VASC, SCC, UNK``) and ``ISIC_2019_Training_Metadata.csv``
  (``image, age_approx, anatom_site_general, lesion_id, sex``); image ids may end in ``_downsampled``.
- ``isic2020``: ``train.csv`` / ``ISIC_2020_Training_GroundTruth[_v2].csv`` (``image_name, patient_id,
  [lesion_id,] sex, age_approx, anatom_site_general_challenge, diagnosis, benign_malignant, target``) with
  the images in ``train/`` or ``jpeg/train/``; ``ISIC_2020_Training_Duplicates.csv``, when present, lists
  pairs of the same image: the second of each pair is quarantined.

Every image keeps its lesion and patient ids (groups follow ``datasets.<name>.group_by``) and, for the
Archive, its licence and attribution, which the model card summarises.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from mobiledx.data.adapters.registry import (
    DatasetLayoutError,
    Quarantine,
    apply_label_policy,
    dataset_files,
    find_one,
    index_images,
    label_disagreement,
    listed_without_file,
    match_listed_images,
    missing_files_note,
    nfc,
    policy_classes,
    policy_columns,
    read_table,
    register,
)
from mobiledx.data.manifest import LabelPolicy, ScanOptions, ScanResult

ARCHIVE_METADATA = "metadata.csv"
ISIC2019_GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"
ISIC2019_METADATA = "ISIC_2019_Training_Metadata.csv"
ISIC2019_CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
ISIC2020_TABLES = ("train.csv", "ISIC_2020_Training_GroundTruth_v2.csv", "ISIC_2020_Training_GroundTruth.csv")
ISIC2020_DUPLICATES = "ISIC_2020_Training_Duplicates.csv"
ISIC2020_TARGETS = {"0": "benign", "1": "malignant"}
ARCHIVE_FIELDS = ["attribution", "copyright_license", "age_approx", "sex", "anatom_site_1", "anatom_site_general",
                  "lesion_id", "patient_id", *(f"diagnosis_{level}" for level in range(1, 6)), "benign_malignant",
                  "diagnosis"]
ISIC2020_FIELDS = ["lesion_id", "sex", "age_approx", "anatom_site_general_challenge", "diagnosis", "benign_malignant"]

# What each label-bearing column says about benign versus malignant (None: nothing, e.g. "unknown",
# "Indeterminate"). Two columns of one row that answer differently refuse the row (label_disagreement).
MALIGNANT_DIAGNOSES = {"melanoma", "melanoma metastasis", "basal cell carcinoma", "squamous cell carcinoma"}
BENIGN_DIAGNOSES = {"nevus", "seborrheic keratosis", "lentigo nos", "lichenoid keratosis", "solar lentigo",
                    "cafe-au-lait macule", "dermatofibroma", "vascular lesion", "angioma", "lentigo simplex"}


def _by_word(value: str) -> str | None:
    """``benign`` / ``malignant`` from a value that says it (``Benign``, ``malignant``, ``Malignant melanocytic
    proliferations (Melanoma)``, ``Melanoma, NOS``); ``None`` for anything else (``Indeterminate``, ``unknown``)."""
    lowered = value.lower()
    if lowered.startswith("malignant") or lowered.startswith("melanoma"):
        return "malignant"
    if lowered.startswith("benign") or lowered == "nevus":
        return "benign"
    return None


def _by_diagnosis(value: str) -> str | None:
    lowered = value.lower()
    return "malignant" if lowered in MALIGNANT_DIAGNOSES else "benign" if lowered in BENIGN_DIAGNOSES else None


def _by_target(value: str) -> str | None:
    return value if value in ISIC2020_TARGETS.values() else None


ARCHIVE_READERS = {"diagnosis_1": _by_word, "benign_malignant": _by_word, "diagnosis_2": _by_word,
                   "diagnosis_3": _by_word, "diagnosis": _by_diagnosis}
ISIC2020_READERS = {"target": _by_target, "benign_malignant": _by_word, "diagnosis": _by_diagnosis}


def _target(value: str) -> str | None:
    """ISIC 2020's ``target`` as ``"0"`` / ``"1"`` (``1.0`` too); ``""`` when empty; ``None`` when unreadable."""
    value = value.strip()
    if not value:
        return ""
    try:
        number = float(value)
    except ValueError:
        return None
    return str(int(number)) if number in (0.0, 1.0) else None


def _name(relative: str) -> str:
    return relative.rsplit("/", 1)[-1]


def _suffix(relative: str) -> str:
    return os.path.splitext(_name(relative))[1].lower()


def _first(row: dict, *columns: str) -> str:
    """The first non-empty value among ``columns`` (newer and older names of one field)."""
    return next((row[c] for c in columns if row.get(c, "").strip()), "")


def _labelled_records(table: pd.DataFrame, id_column: str, found: dict[str, str], policy: LabelPolicy,
                      default_field: str, quarantine: Quarantine, describe, readers=None,
                      where: str = "") -> list[dict]:
    """One record per listed image that has a file and a class under ``policy``; ``describe(row)`` gives
    the metadata fields of a row. ``readers``: the row's label-bearing columns, which must agree
    (:func:`label_disagreement`)."""
    records = []
    columns = [column for column in (readers or {}) if column in table.columns]
    readers = {column: readers[column] for column in columns}
    for row in table.drop_duplicates(id_column, keep=False).to_dict("records"):
        image_id = row[id_column]
        if image_id not in found:
            continue
        reason = label_disagreement(row, readers, f"its row in {where}") if len(readers) > 1 else None
        label = None
        if reason is None:
            label, reason = apply_label_policy(row, policy, default_field)
        if reason is not None:
            quarantine.add(image_id, found[image_id], reason)
            continue
        records.append({"image_id": image_id, "path": found[image_id], "label": label, **describe(row)})
    return records


@register("isic_archive", label_policy=True)
def scan_isic_archive(raw_dir: Path, options: ScanOptions = ScanOptions()) -> ScanResult:
    """An ``isic image download`` folder (see the module docstring); label: ``labels.column`` (``diagnosis_1``).

    The columns that say benign or malignant (``diagnosis_1..3``, older ``benign_malignant`` and
    ``diagnosis``) must agree: a row whose columns contradict each other is refused with both values."""
    raw_dir = Path(raw_dir)
    quarantine = Quarantine()
    metadata_path = find_one(raw_dir, ARCHIVE_METADATA)
    table, unreadable = read_table(metadata_path, ["isic_id"], "an isic-cli download", quarantine, id_column="isic_id",
                                   label_columns=policy_columns(options.labels, "diagnosis_1"), known=ARCHIVE_FIELDS)
    column = nfc(options.labels.column) or "diagnosis_1"
    if column not in table.columns and not any("=" in key for key in options.labels.map):
        raise DatasetLayoutError(
            f"{metadata_path} has no column {column!r} (datasets.<name>.labels.column). Its columns: "
            f"{', '.join(table.columns)}. Fix: choose one of them, e.g. diagnosis_1 (benign/malignant) or diagnosis_3")
    table["isic_id"] = table["isic_id"].str.strip()
    images = index_images(raw_dir, quarantine, metadata=(metadata_path,), collapse_copies=True,
                          ignore=lambda f: "a text file of the download, not read"
                          if _suffix(f) in (".txt", ".csv", ".md") else None)
    found = match_listed_images(table["isic_id"], images, quarantine, ARCHIVE_METADATA, unreadable).to_dict()
    records = _labelled_records(table, "isic_id", found, options.labels, column, quarantine, lambda row: {
        "lesion_id": row.get("lesion_id", ""), "patient_id": row.get("patient_id", ""),
        "age": row.get("age_approx", ""), "sex": row.get("sex", ""),
        "site": _first(row, "anatom_site_1", "anatom_site_general"),
        "license": row.get("copyright_license", ""), "attribution": row.get("attribution", "")},
        readers=ARCHIVE_READERS, where=ARCHIVE_METADATA)
    native = sorted({record["label"] for record in records})
    missing = listed_without_file(table["isic_id"], images)
    return quarantine.result(records, policy_classes(options.labels, native),
                             notes=missing_files_note(len(set(table["isic_id"])), missing, ARCHIVE_METADATA,
                                                      "Re-run `isic image download` into the same folder: it fetches "
                                                      "only what is missing."))


def _one_hot(values: dict[str, str]) -> tuple[str, str | None]:
    """ISIC 2019's one-hot row: ``(class, None)``, ``("", None)`` when no class is marked, or ``("", why)``
    when a value is not 0 or 1 (named with the value) or several classes are marked."""
    ones, problems = [], []
    for column, raw in values.items():
        text = raw.strip()
        try:
            number = float(text)
        except ValueError:
            problems.append(f"{column} is empty" if not text else f"{column} {raw!r} is not a number")
            continue
        if number == 1.0:
            ones.append(column)
        elif number != 0.0:
            problems.append(f"{column} {raw!r} is not 0 or 1")
    if problems:
        return "", f"{ISIC2019_GROUND_TRUTH}: {', '.join(problems)}: the one-hot row cannot be read"
    if len(ones) > 1:
        return "", f"{ISIC2019_GROUND_TRUTH}: not exactly one class marked 1 (one-hot) for this image"
    return (ones[0].lower() if ones else ""), None


@register("isic2019", label_policy=True)
def scan_isic2019(raw_dir: Path, options: ScanOptions = ScanOptions()) -> ScanResult:
    """The ISIC 2019 training set: one-hot ground truth (exactly one 1 per row, else quarantined) and metadata.

    A row marking several classes, or holding a value that is not 0 or 1, is always refused (with the
    values), whatever ``labels.missing`` says: it is two labels, or none that can be read, not a missing one."""
    raw_dir = Path(raw_dir)
    quarantine = Quarantine()
    truth_path = find_one(raw_dir, ISIC2019_GROUND_TRUTH)
    truth, unreadable = read_table(truth_path, ["image", *ISIC2019_CLASSES[:-1]], "the ISIC 2019 ground truth",
                                   quarantine, id_column="image")
    metadata_path = find_one(raw_dir, ISIC2019_METADATA)
    metadata, bad_metadata = read_table(metadata_path, ["image", "age_approx", "anatom_site_general", "lesion_id",
                                                        "sex"], "the ISIC 2019 metadata", quarantine, id_column="image")
    truth["image"] = truth["image"].str.strip()
    metadata["image"] = metadata["image"].str.strip()
    columns = [c for c in ISIC2019_CLASSES if c in truth.columns]
    diagnosis, refused = [], {}
    for image, *values in zip(truth["image"], *(truth[c] for c in columns), strict=True):
        label, why = _one_hot(dict(zip(columns, values, strict=True)))
        diagnosis.append(label)
        if why is not None:
            refused[image] = why
    truth["diagnosis"] = diagnosis
    # metadata rows that cannot be used: listed twice, or unreadable: their image is refused, naming that file
    described = set(metadata["image"])
    times = metadata["image"].value_counts()
    for image, count in times[times > 1].items():
        refused.setdefault(image, f"image id listed {count} times in {ISIC2019_METADATA}: which row describes it "
                                  f"is unknown")
    for image, reasons in bad_metadata.items():
        refused.setdefault(image, reasons[0])
    metadata = metadata.drop_duplicates("image", keep=False)
    table = truth[["image", "diagnosis"]].merge(metadata, on="image", how="left").fillna("")
    images = index_images(raw_dir, quarantine, metadata=(truth_path, metadata_path), collapse_copies=True)
    found = match_listed_images(table["image"], images, quarantine, ISIC2019_GROUND_TRUTH, unreadable).to_dict()
    for image in sorted(described - set(truth["image"]) - set(unreadable) - set(images["stem"])):
        quarantine.add(image, "", f"listed in {ISIC2019_METADATA} but not in {ISIC2019_GROUND_TRUTH}, and no file "
                                  f"found")
    policy = options.labels
    for row in table.itertuples(index=False):  # say precisely what is wrong
        if row.image not in found:
            continue
        if row.image in refused:
            quarantine.add(row.image, found.pop(row.image), refused[row.image])
        elif not policy.column and not row.diagnosis and policy.missing == "quarantine":
            quarantine.add(row.image, found.pop(row.image), f"{ISIC2019_GROUND_TRUTH}: not exactly one class "
                                                           f"marked 1 (one-hot) for this image")
        elif not policy.column and row.diagnosis == "unk" and "unk" not in policy.map:
            quarantine.add(row.image, found.pop(row.image), f"{ISIC2019_GROUND_TRUTH} marks it UNK (no diagnosis)")
    records = _labelled_records(table, "image", found, policy, "diagnosis", quarantine, lambda row: {
        "lesion_id": row["lesion_id"], "patient_id": "", "age": row["age_approx"], "sex": row["sex"],
        "site": row["anatom_site_general"]})
    native = [c.lower() for c in columns if c != "UNK"]
    missing = listed_without_file(table["image"], images)
    return quarantine.result(records, policy_classes(policy, native),
                             notes=missing_files_note(len(set(table["image"])), missing, ISIC2019_GROUND_TRUTH,
                                                      "Extract ISIC_2019_Training_Input.zip into this folder."))


def _duplicate_components(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Each image named in ``pairs`` -> the first-named image of its chain of duplicates (union-find)."""
    parent: dict[str, str] = {}

    def root(image: str) -> str:
        parent.setdefault(image, image)
        while parent[image] != image:
            parent[image] = parent[parent[image]]
            image = parent[image]
        return image

    order = {image: position for position, image in enumerate(i for pair in pairs for i in pair)}
    for first, second in pairs:
        a, b = root(first), root(second)
        if a != b:
            keep, other = sorted((a, b), key=lambda image: order[image])
            parent[other] = keep
    return {image: root(image) for image in order}


@register("isic2020", label_policy=True)
def scan_isic2020(raw_dir: Path, options: ScanOptions = ScanOptions()) -> ScanResult:
    """The ISIC 2020 (SIIM-ISIC melanoma) training set: label ``target`` (benign/malignant) by default, or
    ``labels.column: diagnosis`` with a ``labels.map``; grouped by patient.

    ``target``, ``benign_malignant`` and ``diagnosis`` must agree (a melanoma marked ``target 0`` is
    refused with both values); an unreadable ``target`` refuses its row, named with its value. Of the
    images ``ISIC_2020_Training_Duplicates.csv`` lists as one, the first that is kept stays and the
    others are refused; a listed image that is absent changes nothing for those present."""
    raw_dir = Path(raw_dir)
    quarantine = Quarantine()
    files = dataset_files(raw_dir)
    tables = [raw_dir / f for f in files if _name(f) in ISIC2020_TABLES]
    if not tables:
        raise DatasetLayoutError(f"{raw_dir}: none of {', '.join(ISIC2020_TABLES)} found. Fix: put the training "
                                 f"table there, or check datasets.<name>.kind")
    table_path = sorted(tables, key=lambda p: ISIC2020_TABLES.index(p.name))[0]
    policy = options.labels
    table, unreadable = read_table(table_path, ["image_name", "patient_id", "target"], "the ISIC 2020 training table",
                                   quarantine, id_column="image_name",
                                   label_columns=["target", *policy_columns(policy, "target")], known=ISIC2020_FIELDS)
    table["image_name"] = table["image_name"].str.strip()
    raw_targets = table["target"].copy()
    table["target"] = raw_targets.map(_target).map(ISIC2020_TARGETS).fillna("")  # benign / malignant / ""
    duplicates_path = next((raw_dir / f for f in files if _name(f) == ISIC2020_DUPLICATES), None)
    read = (table_path, *((duplicates_path,) if duplicates_path is not None else ()))
    images = index_images(raw_dir, quarantine, metadata=read, collapse_copies=True,
                          ignore=lambda f: f"another table of the download, not read ({table_path.name} is)"
                          if _suffix(f) == ".csv" else None)
    found = match_listed_images(table["image_name"], images, quarantine, table_path.name, unreadable).to_dict()
    for image, target in zip(table["image_name"], raw_targets, strict=True):
        if image in found and _target(target) is None:
            quarantine.add(image, found.pop(image), f"target {target!r} in {table_path.name} is not 0 or 1")
    records = _labelled_records(table, "image_name", found, policy, "target", quarantine, lambda row: {
        "lesion_id": row.get("lesion_id", ""), "patient_id": row["patient_id"], "age": row.get("age_approx", ""),
        "sex": row.get("sex", ""), "site": row.get("anatom_site_general_challenge", "")},
        readers=ISIC2020_READERS, where=table_path.name)
    if duplicates_path is not None:
        records = _drop_listed_duplicates(records, duplicates_path, quarantine)
    native = list(ISIC2020_TARGETS.values()) if not policy.column else sorted({r["label"] for r in records})
    missing = listed_without_file(table["image_name"], images)
    return quarantine.result(records, policy_classes(policy, native),
                             notes=missing_files_note(len(set(table["image_name"])), missing, table_path.name,
                                                      "Extract the training JPEGs (ISIC_2020_Training_JPEG.zip) into "
                                                      "this folder."))


def _drop_listed_duplicates(records: list[dict], duplicates_path: Path, quarantine: Quarantine) -> list[dict]:
    """Keep one record of each set of images the duplicates list names as one: the first listed among those
    with a record. Images without a record (absent, or refused for their own reason) change nothing.
    Copies labelled differently are all refused, with both labels."""
    pairs_table, _ = read_table(duplicates_path, ["image_name_1", "image_name_2"], "the duplicates list", quarantine)
    pairs = [(nfc(a.strip()), nfc(b.strip())) for a, b in zip(pairs_table["image_name_1"], pairs_table["image_name_2"],
                                                            strict=True) if a.strip() and b.strip()]
    component = _duplicate_components(pairs)
    order = {image: position for position, image in enumerate(i for pair in pairs for i in pair)}
    members: dict[str, list[dict]] = {}
    for record in records:
        if record["image_id"] in component:
            members.setdefault(component[record["image_id"]], []).append(record)
    refused: set[str] = set()
    for group in members.values():
        group.sort(key=lambda record: order[record["image_id"]])
        labels = sorted({record["label"] for record in group})
        for position, record in enumerate(group):
            if len(labels) > 1:
                others = ", ".join(r["image_id"] for r in group if r is not record)
                reason = f"the same image as {others} ({ISIC2020_DUPLICATES}), labelled {' and '.join(labels)}"
            elif position:
                reason = f"the same image as {group[0]['image_id']} ({ISIC2020_DUPLICATES})"
            else:
                continue
            quarantine.add(record["image_id"], record["path"], reason)
            refused.add(record["image_id"])
    return [record for record in records if record["image_id"] not in refused]

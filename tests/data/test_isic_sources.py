"""The sources users download: the ISIC Archive (isic-cli), ISIC 2019 and ISIC 2020, in their real layouts."""

import pandas as pd
import pytest

from mobiledx.data.adapters import scan_isic2019, scan_isic2020, scan_isic_archive
from mobiledx.data.adapters.registry import DatasetLayoutError
from mobiledx.data.intake import ingest
from mobiledx.data.manifest import ScanOptions
from mobiledx.params import LabelPolicy
from mobiledx.preparation.validation import DataValidationError, raise_for_critical, validate_manifest
from mobiledx.preparation.validation_report import render_report
from tests.support import archive_rows, write_isic2019, write_isic2020, write_isic_archive

BINARY = LabelPolicy(map={"Benign": "benign", "Malignant": "malignant"})


def reasons(scan) -> dict[str, str]:
    return dict(zip(scan.quarantine["image_id"], scan.quarantine["reason"]))


def test_archive_download_with_the_level_1_diagnosis_mapped_to_two_classes(tmp_path):
    root = write_isic_archive(tmp_path / "archive", archive_rows())
    scan = scan_isic_archive(root, ScanOptions(labels=BINARY))
    assert scan.classes == ["benign", "malignant"] and len(scan.records) == 11
    # Indeterminate is neither: refused with the value and the param that decides, never dropped silently
    assert reasons(scan) == {"ISIC_0000011": "diagnosis_1 'Indeterminate' is not in datasets.<name>.labels.map"}
    records = scan.records.set_index("isic_id" if "isic_id" in scan.records else "image_id")
    assert records.loc["ISIC_0000000", "patient_id"] == "IP_0000000" and records.loc["ISIC_0000000", "site"] == "Trunk"
    assert set(records["license"]) == {"CC-BY-NC", "CC-0"} and "ViDIR Group" in set(records["attribution"])
    sent = scan_isic_archive(root, ScanOptions(labels=LabelPolicy(map=BINARY.map, unmapped="indeterminate")))
    assert sent.classes == ["benign", "indeterminate", "malignant"] and len(sent.records) == 12


def test_archive_ham10000_style_classes_from_two_diagnosis_levels(tmp_path):
    rows = archive_rows(patients=2, lesions_per_patient=1, images_per_lesion=1)
    rows.append({**rows[0], "isic_id": "ISIC_0000100", "diagnosis_1": "Benign",
                 "diagnosis_2": "Benign soft tissue proliferations - Vascular", "diagnosis_3": ""})
    root = write_isic_archive(tmp_path / "archive", rows)
    policy = LabelPolicy(column="diagnosis_3", map={
        "diagnosis_2=Benign soft tissue proliferations - Vascular": "vasc", "Nevus": "nv", "Melanoma, NOS": "mel",
        "Solar or actinic keratosis": "akiec"})
    scan = scan_isic_archive(root, ScanOptions(labels=policy))
    labels = dict(zip(scan.records["image_id"], scan.records["label"]))
    assert labels == {"ISIC_0000000": "nv", "ISIC_0000001": "akiec", "ISIC_0000100": "vasc"}
    assert scan.classes == ["akiec", "mel", "nv", "vasc"]


def test_an_older_archive_download_with_removed_columns_is_read(tmp_path):
    rows = [{**{k: v for k, v in row.items() if k != "anatom_site_1"}, "anatom_site_general": "posterior torso",
             "benign_malignant": row["diagnosis_1"].lower()} for row in archive_rows(1, 1, 2)]
    root = write_isic_archive(tmp_path / "old", rows)
    scan = scan_isic_archive(root, ScanOptions(labels=LabelPolicy(column="benign_malignant")))
    assert set(scan.records["label"]) == {"benign", "indeterminate"}
    assert set(scan.records["site"]) == {"posterior torso"}
    with pytest.raises(DatasetLayoutError, match="no column 'diagnosis_9'.*Fix: choose one of them"):
        scan_isic_archive(root, ScanOptions(labels=LabelPolicy(column="diagnosis_9")))


def test_archive_groups_by_patient_and_keeps_licences_in_the_manifest(tmp_path):
    root = write_isic_archive(tmp_path / "archive", archive_rows())
    result = ingest(root, "isic_archive", 16, tmp_path / "images.npy", workers=1, options=ScanOptions(labels=BINARY))
    manifest = result.manifest
    assert result.grouping == "grouped by patient (3 patients)"
    assert manifest.groupby("patient_id")["group_id"].nunique().max() == 1 and manifest["group_id"].nunique() == 3
    assert set(manifest["license"]) == {"CC-BY-NC", "CC-0"} and (manifest["width"] == 40).all()
    lesion = ingest(root, "isic_archive", 16, tmp_path / "images.npy", workers=1, options=ScanOptions(labels=BINARY),
                    group_by="lesion")
    assert lesion.grouping == "grouped by lesion (6 lesions)" and lesion.manifest["group_id"].nunique() == 6


def test_a_lesion_linked_to_two_patients_fails_validation_naming_it(tmp_path):
    rows = archive_rows()
    rows[1]["patient_id"] = "IP_0000009"  # the second image of lesion IL_0000000 claims another patient
    root = write_isic_archive(tmp_path / "archive", rows)
    result = ingest(root, "isic_archive", 16, tmp_path / "images.npy", workers=1, options=ScanOptions(labels=BINARY))
    outcome = validate_manifest(result.manifest, result.classes, result.quarantine, 1, 0.5)
    failure = next(f for f in outcome.critical_failures() if f.name.endswith("(lesion_patients.n_patients)"))
    assert failure.detail == "no lesion belongs to two patients" and failure.unexpected_count == 1
    assert failure.examples[0]["lesion_id"] == "IL_0000000"
    assert failure.examples[0]["patients"] == "IP_0000000, IP_0000009"
    with pytest.raises(DataValidationError, match="no lesion belongs to two patients"):
        raise_for_critical(outcome, "archive")


def test_isic2019_one_hot_truth_lesions_and_downsampled_ids(tmp_path):
    rows = [("ISIC_0000000", "NV", "HAM_0000001", "45", "male"), ("ISIC_0000001", "NV", "HAM_0000001", "45", "male"),
            ("ISIC_0000002_downsampled", "MEL", "", "", ""), ("ISIC_0000003", "BCC", "BCN_0000007", "70", "female"),
            ("ISIC_0000004", "MEL+NV", "", "60", "female"), ("ISIC_0000005", "UNK", "", "50", "male")]
    for one_hot_format in ("{:.1f}", "{}"):  # both "1.0" and "1" are found in copies of the file
        root = write_isic2019(tmp_path / one_hot_format.strip("{}:.") / "isic2019", rows, one_hot_format)
        scan = scan_isic2019(root)
        assert scan.classes == ["mel", "nv", "bcc", "ak", "bkl", "df", "vasc", "scc"]
        assert dict(zip(scan.records["image_id"], scan.records["label"])) == {
            "ISIC_0000000": "nv", "ISIC_0000001": "nv", "ISIC_0000002_downsampled": "mel", "ISIC_0000003": "bcc"}
        assert reasons(scan) == {"ISIC_0000004": "ISIC_2019_Training_GroundTruth.csv: not exactly one class marked 1 "
                                                 "(one-hot) for this image",
                                 "ISIC_0000005": "ISIC_2019_Training_GroundTruth.csv marks it UNK (no diagnosis)"}
    result = ingest(root, "isic2019", 16, tmp_path / "images.npy", workers=1)
    assert result.grouping == "grouped by lesion (2 lesions); 1 image(s) without a lesion id, each alone"
    groups = dict(zip(result.manifest["image_id"], result.manifest["group_id"]))
    assert groups["ISIC_0000000"] == groups["ISIC_0000001"] == "HAM_0000001"
    assert groups["ISIC_0000002_downsampled"] == "image:ISIC_0000002_downsampled"


@pytest.mark.parametrize("kaggle", [True, False])
def test_isic2020_targets_patients_and_listed_duplicates(tmp_path, kaggle):
    rows = [("ISIC_0000010", "IP_0000001", "nevus", "0"), ("ISIC_0000011", "IP_0000001", "melanoma", "1"),
            ("ISIC_0000012", "IP_0000002", "unknown", "0"), ("ISIC_0000013", "IP_0000002", "unknown", "0")]
    root = write_isic2020(tmp_path / "isic2020", rows, duplicates=[("ISIC_0000012", "ISIC_0000013")], kaggle=kaggle)
    scan = scan_isic2020(root)
    assert scan.classes == ["benign", "malignant"]
    assert dict(zip(scan.records["image_id"], scan.records["label"])) == {
        "ISIC_0000010": "benign", "ISIC_0000011": "malignant", "ISIC_0000012": "benign"}
    assert reasons(scan) == {"ISIC_0000013": "the same image as ISIC_0000012 (ISIC_2020_Training_Duplicates.csv)"}
    diagnosis = scan_isic2020(root, ScanOptions(labels=LabelPolicy(column="diagnosis", map={
        "nevus": "nv", "melanoma": "mel"}, unmapped="quarantine")))
    assert set(diagnosis.records["label"]) == {"nv", "mel"}
    assert reasons(diagnosis)["ISIC_0000012"] == "diagnosis 'unknown' is not in datasets.<name>.labels.map"
    result = ingest(root, "isic2020", 16, tmp_path / "images.npy", workers=1)
    assert result.grouping == "grouped by patient (2 patients)"
    assert pd.isna(result.manifest.set_index("image_id").loc["ISIC_0000011", "age"])  # empty: unknown, counted
    assert result.normalised["age: empty, kept as unknown"] == 1


def test_isic_sources_report_a_partial_download(tmp_path):
    root = write_isic_archive(tmp_path / "archive", archive_rows())
    for number in range(4, 12):
        (root / f"ISIC_{number:07d}.jpg").unlink()
    result = ingest(root, "isic_archive", 16, tmp_path / "images.npy", workers=1, options=ScanOptions(labels=BINARY))
    assert result.notes == ["8 of the 12 images listed in metadata.csv have no file (ISIC_0000004 … ISIC_0000011): "
                            "the download looks partial. Re-run `isic image download` into the same folder: it fetches "
                            "only what is missing."]
    outcome = validate_manifest(result.manifest, result.classes, result.quarantine, 1, 0.05,
                                ingest_info={"notes": result.notes})
    with pytest.raises(DataValidationError, match="note: 8 of the 12 images"):
        raise_for_critical(outcome, "archive")
    assert "## Notes" in render_report(outcome, "archive")

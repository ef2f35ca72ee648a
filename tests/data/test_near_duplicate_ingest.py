"""Near-duplicate images under different lesion ids, at ingest: grouped, quarantined or reported, never silent."""

import numpy as np
import pandas as pd
import pytest

from mobiledx.data.demo import generate_ham10000_demo
from mobiledx.data.intake import ingest
from mobiledx.params import SplitParams
from mobiledx.preparation.splits import split_manifest
from tests.support import altered_copy

SIZE = 96


@pytest.fixture(scope="module")
def download(tmp_path_factory):
    """150 demo photos in the HAM10000 layout plus 15 altered copies of them filed as new lesions (new image
    and lesion ids, same diagnosis): ``(root, {copy id: original id})``."""
    root = tmp_path_factory.mktemp("ham")
    meta = generate_ham10000_demo(root, 150, seed=21)
    rng = np.random.default_rng(0)
    folder = root / "HAM10000_images_part_1"
    copies, rows = {}, []
    for number, row in enumerate(meta.sample(15, random_state=0).itertuples(index=False)):
        image_id = f"ISIC_{9000000 + number:07d}"
        (folder / f"{image_id}.jpg").write_bytes(altered_copy((folder / f"{row.image_id}.jpg").read_bytes(), rng))
        rows.append({**row._asdict(), "image_id": image_id, "lesion_id": f"HAM_{9000000 + number:07d}"})
        copies[image_id] = row.image_id
    metadata = pd.read_csv(root / "HAM10000_metadata.csv", dtype=str, keep_default_na=False)
    pd.concat([metadata, pd.DataFrame(rows).astype(str)]).to_csv(root / "HAM10000_metadata.csv", index=False)
    return root, copies


def _ingest(download, tmp_path, policy):
    root, _ = download
    return ingest(root, "ham10000", image_size=SIZE, images_path=tmp_path / "images.npy", workers=1,
                  near_duplicates=policy)


def _pairs(result) -> set[frozenset]:
    return {frozenset((p["image_a"], p["image_b"])) for p in result.near_duplicates["pairs"]}


def test_every_copy_under_a_new_lesion_id_shares_its_originals_group_and_split(download, tmp_path):
    _, copies = download
    result = _ingest(download, tmp_path, "group")
    assert {frozenset(pair) for pair in copies.items()} <= _pairs(result)
    groups = result.manifest.set_index("image_id")["group_id"]
    assert all(groups[copy] == groups[original] for copy, original in copies.items())
    assert result.near_duplicates["n_images_regrouped"] >= len(copies)
    assignment = split_manifest(result.manifest, SplitParams(), seed=0).set_index("image_id")["split"]
    assert all(assignment[copy] == assignment[original] for copy, original in copies.items())
    assert len(result.manifest) == 165 and result.quarantine.empty  # nothing lost


def test_quarantine_keeps_one_image_of_each_set_with_a_true_reason_and_a_matching_cache(download, tmp_path):
    _, copies = download
    reported = _ingest(download, tmp_path / "report", "report")
    result = _ingest(download, tmp_path / "quarantine", "quarantine")
    why = dict(zip(result.quarantine["image_id"], result.quarantine["reason"]))
    for copy, original in copies.items():  # the copies come after their originals in the listing
        assert why[copy].startswith(f"near-duplicate of {original} across groups")
    assert len(result.manifest) + len(result.quarantine) == 165 == len(reported.manifest)
    kept = reported.manifest.reset_index().set_index("image_id").loc[result.manifest["image_id"], "index"]
    np.testing.assert_array_equal(result.images[np.arange(len(result.manifest))], reported.images[kept.to_numpy()])


def test_report_lists_the_pairs_and_validation_warns_that_they_cross_groups(download, tmp_path):
    from mobiledx.preparation.validation import validate_manifest

    _, copies = download
    result = _ingest(download, tmp_path, "report")
    assert {frozenset(pair) for pair in copies.items()} <= _pairs(result)
    groups = result.manifest.set_index("image_id")["group_id"]
    assert all(groups[copy] != groups[original] for copy, original in copies.items())  # unchanged
    info = {"near_duplicates": result.near_duplicates}
    outcome = validate_manifest(result.manifest, result.classes, result.quarantine, 1, 0.5, ingest_info=info)
    check = next(e for e in outcome.expectations if e.name.startswith("expect_column_pair_values_to_be_equal"))
    assert outcome.success and check.status == "warning" and check.unexpected_count >= len(copies)
    assert set(check.examples[0]) == {"image_a", "image_b", "distance", "group_a", "group_b"}
    grouped = _ingest(download, tmp_path / "group", "group")
    outcome = validate_manifest(grouped.manifest, grouped.classes, grouped.quarantine, 1, 0.5,
                                ingest_info={"near_duplicates": grouped.near_duplicates})
    check = next(e for e in outcome.expectations if e.name.startswith("expect_column_pair_values_to_be_equal"))
    assert check.status == "passed" and outcome.summary["near_duplicates"]["n_pairs"] >= len(copies)


def test_flat_images_are_never_near_duplicates_of_each_other():
    """A blank frame or a solid colour hashes to all zeros; such images are counted, not paired (else every
    two flat images of any colour would merge their groups)."""
    from mobiledx.data.near_duplicates import image_hashes, resolve_near_duplicates

    flat = np.stack([np.full((32, 32, 3), shade, np.uint8) for shade in (0, 90, 200)])
    manifest = pd.DataFrame({"image_id": ["a", "b", "c"], "group_id": ["g1", "g2", "g3"]})
    near = resolve_near_duplicates(manifest, image_hashes(flat), "group")
    assert near.pairs.empty and list(near.group_id) == ["g1", "g2", "g3"]
    assert near.summary()["n_images_too_uniform_to_compare"] == 3

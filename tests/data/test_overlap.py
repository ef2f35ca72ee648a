"""`mobiledx overlap A B`: images two datasets share, by ISIC id and by content."""

import numpy as np
import pandas as pd
import pytest

from mobiledx import cli
from mobiledx.data.demo import generate_ham10000_demo
from mobiledx.data.intake import ingest
from mobiledx.io import write_csv, write_json
from tests.support import altered_copy


def _ingest_into(project, name, raw):
    """Ingest ``raw`` (HAM10000 layout) as dataset ``name`` of ``project``, as the ingest stage writes it."""
    folder = project / "data" / "ingested" / name
    result = ingest(raw, "ham10000", image_size=64, images_path=folder / "images.npy", workers=1)
    write_csv(folder / "manifest.csv", result.manifest)
    write_json(folder / "dataset.json", {"dataset": name, "classes": result.classes, "image_size": 64})
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Dataset ``a``: 80 demo photos. Dataset ``b``, another download: 10 of ``a``'s photos resized and
    re-encoded under their own ISIC ids, 5 more re-shared under new ids, and 40 photos of its own."""
    root = tmp_path_factory.mktemp("overlap")
    raw_a, raw_b = root / "raw-a", root / "raw-b"
    meta_a = generate_ham10000_demo(raw_a, 80, seed=31)
    meta_b = generate_ham10000_demo(raw_b, 40, seed=32)
    meta_b["image_id"] = [f"ISIC_{8000000 + i:07d}" for i in range(len(meta_b))]  # ids of its own
    for old, new in zip(sorted((raw_b / "HAM10000_images_part_1").glob("*.jpg")), meta_b["image_id"], strict=True):
        old.rename(old.with_name(f"{new}.jpg"))
    rng = np.random.default_rng(3)
    shared = meta_a.sample(15, random_state=1).reset_index(drop=True)
    rows = []
    for k, row in shared.iterrows():
        image_id = row["image_id"] if k < 10 else f"ISIC_{8100000 + k:07d}"
        source = (raw_a / "HAM10000_images_part_1" / f"{row['image_id']}.jpg").read_bytes()
        (raw_b / "HAM10000_images_part_1" / f"{image_id}.jpg").write_bytes(altered_copy(source, rng))
        rows.append({**row.to_dict(), "image_id": image_id, "lesion_id": f"HAM_{8100000 + k:07d}"})
    pd.concat([meta_b, pd.DataFrame(rows)]).astype(str).to_csv(raw_b / "HAM10000_metadata.csv", index=False)
    _ingest_into(root, "a", raw_a)
    _ingest_into(root, "b", raw_b)
    return root, shared


def test_overlap_finds_shared_ids_and_reshared_content(project):
    from mobiledx.data.overlap import dataset_overlap, load_for_overlap

    root, shared = project
    overlap = dataset_overlap(load_for_overlap("a", root), load_for_overlap("b", root))
    pairs = overlap.pairs.set_index("image_a")
    assert set(pairs.index) == set(shared["image_id"])
    assert (pairs.loc[shared["image_id"][:10], "by"] == "isic_id+content").all()
    assert (pairs.loc[shared["image_id"][10:], "by"] == "content").all()
    counts = overlap.table().set_index("match")
    assert counts.loc["by ISIC id", "pairs"] == 10 and counts.loc["by content", "pairs"] == 15
    assert counts.loc["either", "share of a"] == pytest.approx(15 / 80)
    assert (overlap.pairs["split_a"] == "").all()  # not split yet: said as empty, not guessed


def test_the_overlap_command_prints_the_counts_and_writes_every_pair(project, monkeypatch, capsys):
    root, shared = project
    monkeypatch.chdir(root)
    assert cli.main(["overlap", "a", "b", "--output", str(root / "pairs.csv"), "--show", "3"]) == 0
    out = capsys.readouterr().out
    assert "| either | 15 | 15 | 18.8% | 15 | 27.3% |" in out and "Overlapping images (3 of 15)" in out
    assert set(pd.read_csv(root / "pairs.csv")["image_a"]) == set(shared["image_id"])
    assert cli.main(["overlap", "a", "missing"]) == 2
    assert "dataset 'missing' is not ingested" in capsys.readouterr().err

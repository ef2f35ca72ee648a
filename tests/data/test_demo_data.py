"""The synthetic demo data: real layouts and value conventions, deterministic on every CPU, read by the
real adapters."""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from mobiledx.data.adapters import scan_cnmc, scan_ham10000
from mobiledx.data.demo import generate_clinic_demo, generate_cnmc_demo, generate_ham10000_demo
from tests.support import REPO_ROOT, dvc_dir_md5, emulated_cpus


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def skin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "skin"
    generate_ham10000_demo(root, n_images=140, seed=3)
    return root


@pytest.fixture(scope="module")
def blood(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "blood"
    generate_cnmc_demo(root, n_subjects=9, cells_per_subject=6, seed=3)
    return root


def test_skin_demo_follows_ham10000_conventions(skin):
    metadata = pd.read_csv(skin / "HAM10000_metadata.csv")
    assert list(metadata.columns) == ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
    assert metadata["image_id"].str.fullmatch(r"ISIC_\d{7}").all() and metadata["image_id"].is_unique
    assert metadata["lesion_id"].str.fullmatch(r"HAM_\d{7}").all()
    counts = metadata["dx"].value_counts()
    assert len(metadata) == 140 and set(counts.index) == {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}
    assert counts.min() >= 15 and counts.idxmax() == "nv"
    assert set(metadata["dx_type"]) <= {"histo", "follow_up", "consensus", "confocal"}
    assert set(metadata["sex"]) <= {"male", "female", "unknown"}


def test_skin_demo_has_the_quirks_of_the_real_metadata(tmp_path):
    generate_ham10000_demo(tmp_path / "big", n_images=700, seed=42)
    metadata = pd.read_csv(tmp_path / "big" / "HAM10000_metadata.csv")
    assert metadata["age"].isna().any() and (metadata["age"].dropna() % 5 == 0).all()
    assert (metadata["sex"] == "unknown").any() and (metadata["localization"] == "unknown").any()
    per_lesion = metadata.groupby("lesion_id")
    assert per_lesion.size().max() > 1  # several images for some lesions
    assert (per_lesion[["dx", "sex", "localization"]].nunique() == 1).all().all()  # ... sharing lesion metadata
    text = (tmp_path / "big" / "HAM10000_metadata.csv").read_text()
    assert re.search(r",\d+\.0,", text)  # ages written as floats, like 80.0


def test_skin_images_are_landscape_rgb_jpegs(skin):
    images = sorted((skin / "HAM10000_images_part_1").glob("ISIC_*.jpg"))
    assert len(images) == 140
    with Image.open(images[0]) as image:
        assert image.format == "JPEG" and image.mode == "RGB" and image.size == (200, 150)


def test_blood_demo_follows_cnmc_layout(blood):
    files = sorted((blood / "training_data").glob("fold_*/*/*.bmp"))
    assert files
    subjects_per_fold: dict[str, set] = {}
    labels = []
    for path in files:
        match = re.fullmatch(r"UID_(H?)(\d+)_(\d+)_(\d+)_(all|hem)\.bmp", path.name)
        assert match, path.name
        assert match.group(5) == path.parent.name and (match.group(1) == "H") == (path.parent.name == "hem")
        subjects_per_fold.setdefault(match.group(1) + match.group(2), set()).add(path.parent.parent.name)
        labels.append(match.group(5))
    assert all(len(folds) == 1 for folds in subjects_per_fold.values())  # a subject sits in one fold
    for fold in ("fold_0", "fold_1", "fold_2"):
        assert {p.parent.name for p in files if p.parent.parent.name == fold} == {"all", "hem"}
    ratio = labels.count("all") / labels.count("hem")
    assert 1.3 <= ratio <= 3.0  # roughly 2:1 like C-NMC


def test_demo_is_read_by_the_real_adapters(skin, blood):
    ham = scan_ham10000(skin)
    assert ham.quarantine.empty and len(ham.records) == 140
    cnmc = scan_cnmc(blood)
    assert cnmc.quarantine.empty and set(cnmc.records["label"]) == {"all", "hem"}


def test_same_seed_same_bytes_other_seed_other_images(tmp_path, skin):
    generate_ham10000_demo(tmp_path / "again", n_images=140, seed=3)
    generate_ham10000_demo(tmp_path / "other", n_images=140, seed=4)
    assert tree_hash(tmp_path / "again") == tree_hash(skin)
    assert tree_hash(tmp_path / "other") != tree_hash(skin)


def test_classes_differ_visibly(skin):
    """The signal is learnable: mean colour per class differs between at least some classes."""
    metadata = pd.read_csv(skin / "HAM10000_metadata.csv")
    means = {}
    for dx, rows in metadata.groupby("dx"):
        pixels = [
            np.asarray(Image.open(skin / "HAM10000_images_part_1" / f"{i}.jpg"), float)[50:100, 70:130].mean((0, 1))
            for i in rows["image_id"]
        ]
        means[dx] = np.mean(pixels, axis=0)
    spread = max(np.abs(means[a] - means[b]).max() for a in means for b in means)
    assert spread > 20


def test_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        generate_ham10000_demo(tmp_path / "x", n_images=105, seed=0)


# Generates a small demo and hashes it, in a fresh interpreter (NumPy reads NPY_DISABLE_CPU_FEATURES at
# import). The control is NumPy's own float32 exp, which does depend on the SIMD path.
_GENERATE_AND_HASH = """
import hashlib, json, sys
from pathlib import Path
import numpy as np
from mobiledx.data.demo import generate_clinic_demo, generate_cnmc_demo, generate_ham10000_demo
from mobiledx.data.exactmath import exact_exp, exact_power
from tests.support import dvc_dir_md5
out = Path(sys.argv[1])
generate_ham10000_demo(out / "skin", n_images=35, seed=5)
generate_cnmc_demo(out / "blood", n_subjects=6, cells_per_subject=3, seed=5)
x = np.linspace(-40.0, 40.0, 200_001)
umath = np._core._multiarray_umath
print(json.dumps({
    "skin": dvc_dir_md5(out / "skin"), "blood": dvc_dir_md5(out / "blood"),
    "exact": hashlib.md5(exact_exp(x).tobytes() + exact_power(np.abs(x) / 40, 1.37).tobytes()).hexdigest(),
    "control": hashlib.md5(np.exp(x.astype(np.float32)).tobytes()).hexdigest(),
    "targets": sorted(t for t in umath.__cpu_dispatch__ if umath.__cpu_features__.get(t)),
}))
"""


def _generate_under(env: dict[str, str], out: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", _GENERATE_AND_HASH, str(out)], cwd=REPO_ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout)


def test_demo_generator_gives_the_same_bytes_on_every_simd_path(tmp_path):
    """The same demo on this CPU and on emulated older ones (NumPy and libjpeg-turbo SIMD off, one thread)."""
    here = _generate_under({}, tmp_path / "here")
    for name, env in emulated_cpus().items():
        there = _generate_under(env, tmp_path / name)
        switched_off = set(env["NPY_DISABLE_CPU_FEATURES"].split())
        assert not switched_off & set(there["targets"]), f"{name}: NumPy ignored NPY_DISABLE_CPU_FEATURES"
        if "X86_V3" in switched_off & set(here["targets"]):  # AVX2 kernels really switched off: exp changes
            assert there["control"] != here["control"], "the control should depend on the SIMD path"
        compared = ("skin", "blood", "exact")
        assert {k: there[k] for k in compared} == {k: here[k] for k in compared}, name


def test_demo_data_hashes_equal_the_ones_recorded_in_dvc_lock(tmp_path):
    """On any CPU, make_demo writes the bytes dvc.lock records, so `dvc repro` finds the data stages unchanged."""
    demo = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["demo"]
    lock = yaml.safe_load((REPO_ROOT / "dvc.lock").read_text())["stages"]["make_demo"]
    assert lock["params"]["params.yaml"]["demo"] == demo, "dvc.lock is stale: run `dvc repro make_demo`"
    recorded = {Path(out["path"]).name: out["md5"] for out in lock["outs"]}
    generate_ham10000_demo(tmp_path / "demo-skin", n_images=demo["skin_images"], seed=demo["seed"])
    generate_cnmc_demo(tmp_path / "demo-blood", n_subjects=demo["blood_subjects"],
                       cells_per_subject=demo["blood_cells_per_subject"], seed=demo["seed"])
    generate_clinic_demo(tmp_path / "demo-clinic", tmp_path / "demo-skin", n_images=demo["clinic_images"],
                         shared_images=demo["clinic_shared_images"], seed=demo["seed"])
    assert set(recorded) == {"demo-skin", "demo-blood", "demo-clinic"}
    assert {name: dvc_dir_md5(tmp_path / name) for name in recorded} == recorded

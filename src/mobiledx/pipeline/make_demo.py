"""Stage make_demo: the synthetic demo datasets, in their real datasets' native layouts."""

from __future__ import annotations

from mobiledx.data.demo import generate_clinic_demo, generate_cnmc_demo, generate_ham10000_demo
from mobiledx.io import atomic_directory
from mobiledx.params import Params
from mobiledx.paths import DatasetPaths


def make_demo(params: Params) -> None:
    """Write ``data/raw/demo-skin`` (HAM10000 layout), ``data/raw/demo-blood`` (C-NMC 2019 layout) and
    ``data/raw/demo-clinic`` (ISIC Archive layout: another clinic's camera, sharing some demo-skin images)."""
    with atomic_directory(DatasetPaths("demo-skin").demo_raw) as out:
        generate_ham10000_demo(out, n_images=params.demo.skin_images, seed=params.demo.seed)
    with atomic_directory(DatasetPaths("demo-blood").demo_raw) as out:
        generate_cnmc_demo(out, n_subjects=params.demo.blood_subjects,
                           cells_per_subject=params.demo.blood_cells_per_subject, seed=params.demo.seed)
    with atomic_directory(DatasetPaths("demo-clinic").demo_raw) as out:
        generate_clinic_demo(out, DatasetPaths("demo-skin").demo_raw, n_images=params.demo.clinic_images,
                             shared_images=params.demo.clinic_shared_images, seed=params.demo.seed)

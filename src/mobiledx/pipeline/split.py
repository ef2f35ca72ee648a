"""Stage split: a stratified, group-aware, seeded train/val/test assignment."""

from __future__ import annotations

from dataclasses import asdict

from mobiledx.data.manifest import read_manifest
from mobiledx.evaluation.headline import write_headline
from mobiledx.io import read_json, write_csv, write_json
from mobiledx.params import Params
from mobiledx.paths import DatasetPaths
from mobiledx.preparation.splits import class_counts, split_manifest


def split_dataset(name: str, params: Params) -> None:
    """Write ``split.csv``, its settings (``split.json``, logged by train) and the class counts per split."""
    paths = DatasetPaths(name)
    manifest = read_manifest(paths.manifest)
    classes = read_json(paths.dataset_info)["classes"]
    assignment = split_manifest(manifest, params.split, seed=params.seed)
    counts = class_counts(assignment, classes)
    write_csv(paths.assignment, assignment)
    write_json(paths.split_settings, {"seed": params.seed, **asdict(params.split)})
    write_csv(paths.class_counts, counts.rename_axis("label").reset_index())
    write_headline(paths.split_summary, name, {f"{split}_images": int(counts[split].sum()) for split in counts.columns})
    print(counts.to_string())

"""Stage validate: the Great Expectations suite on the manifest; critical failures stop the pipeline."""

from __future__ import annotations

import pandas as pd

from mobiledx.data.manifest import read_manifest
from mobiledx.io import read_json, write_json, write_text
from mobiledx.params import Params
from mobiledx.paths import DatasetPaths
from mobiledx.preparation.validation import raise_for_critical, validate_manifest
from mobiledx.preparation.validation_report import render_report


def validate_dataset(name: str, params: Params) -> None:
    """Write ``validation.json`` and ``report.md``; raise on a critical failure (after writing them)."""
    paths = DatasetPaths(name)
    info = read_json(paths.dataset_info)
    outcome = validate_manifest(
        read_manifest(paths.manifest),
        classes=info["classes"],
        quarantine=pd.read_csv(paths.quarantine, dtype=str, keep_default_na=False),
        min_images_per_class=params.validate.min_images_per_class,
        max_quarantined_fraction=params.validate.max_quarantined_fraction,
        ingest_info=info,
        missing_files=params.validate.missing_files,
    )
    write_json(paths.validation, outcome.to_dict())
    write_text(paths.validation_report, render_report(outcome, name))
    for warning in outcome.warnings():
        print(f"WARNING {name}: {warning.name}: {warning.unexpected_count} unexpected, e.g. {warning.examples[:2]}")
    if outcome.summary["missing_files"] == "allow" and outcome.summary["n_missing_files"]:
        print(f"NOTE {name}: {outcome.summary['n_missing_files']:,} listed images have no file; "
              f"validate.missing_files: allow counts them apart: the model sees the "
              f"{outcome.summary['n_images']:,} images present (a subset)")
    raise_for_critical(outcome, name)
    print(f"{name}: all critical expectations met (report: {paths.validation_report})")

"""Stage validate: the Great Expectations suite on the manifest; critical failures stop the pipeline."""

from __future__ import annotations

import pandas as pd

from mobiledx.data.manifest import read_manifest
from mobiledx.errors import show
from mobiledx.io import read_json, write_json, write_text
from mobiledx.params import Params
from mobiledx.paths import DatasetPaths
from mobiledx.preparation.validation import (
    DataValidationError,
    ValidationOutcome,
    critical_error,
    validate_manifest,
)
from mobiledx.preparation.validation_report import render_report


def validate_dataset(name: str, params: Params) -> None:
    """Write ``validation.json`` and ``report.md``; raise on a critical failure (after writing them).

    What the user reads (warnings, the error with its fix) is printed as soon as pandas has the verdict,
    within a second; the report follows once Great Expectations, seconds to import, has recorded the same."""
    paths = DatasetPaths(name)
    info = read_json(paths.dataset_info)
    shown: list[DataValidationError] = []

    def tell(verdict: ValidationOutcome) -> None:
        for warning in verdict.warnings():
            print(f"WARNING {name}: {warning.name}: {warning.unexpected_count} unexpected, "
                  f"e.g. {warning.examples[:2]}", flush=True)
        if verdict.summary["missing_files"] == "allow" and verdict.summary["n_missing_files"]:
            print(f"NOTE {name}: {verdict.summary['n_missing_files']:,} listed images have no file; "
                  f"validate.missing_files: allow counts them apart: the model sees the "
                  f"{verdict.summary['n_images']:,} images present (a subset)", flush=True)
        error = critical_error(verdict, name)
        if error is not None:
            show(error)
            shown.append(error)

    outcome = validate_manifest(
        read_manifest(paths.manifest),
        classes=info["classes"],
        quarantine=pd.read_csv(paths.quarantine, dtype=str, keep_default_na=False),
        min_images_per_class=params.validate.min_images_per_class,
        max_quarantined_fraction=params.validate.max_quarantined_fraction,
        ingest_info=info,
        missing_files=params.validate.missing_files,
        on_verdict=tell,
    )
    write_json(paths.validation, outcome.to_dict())
    write_text(paths.validation_report, render_report(outcome, name))
    if shown:  # Great Expectations agreed with it (validate_manifest checks)
        raise shown[0]
    print(f"{name}: all critical expectations met (report: {paths.validation_report})")

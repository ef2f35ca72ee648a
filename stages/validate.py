"""Stage validate: Great Expectations suite on the manifest; critical failures stop the pipeline."""

import pandas as pd

from mobiledx.config import DatasetPaths, parse_stage_args
from mobiledx.data.manifest import read_manifest
from mobiledx.io import read_json, write_json, write_text
from mobiledx.validation import raise_for_critical, render_report, validate_manifest


def main(argv=None) -> None:
    args, params = parse_stage_args(__doc__, argv)
    paths = DatasetPaths(args.dataset)
    settings = params["validate"]
    outcome = validate_manifest(
        read_manifest(paths.ingested / "manifest.csv"),
        classes=read_json(paths.ingested / "dataset.json")["classes"],
        quarantine=pd.read_csv(paths.ingested / "quarantine.csv", dtype=str, keep_default_na=False),
        min_images_per_class=int(settings["min_images_per_class"]),
        max_quarantined_fraction=float(settings["max_quarantined_fraction"]),
    )
    write_json(paths.validated / "validation.json", outcome.to_dict())
    write_text(paths.validated / "report.md", render_report(outcome, args.dataset))
    for warning in outcome.warnings():
        print(f"WARNING {args.dataset}: {warning.name}: {warning.unexpected_count} unexpected, e.g. {warning.examples[:2]}")
    raise_for_critical(outcome, args.dataset)
    print(f"{args.dataset}: all critical expectations met (report: {paths.validated / 'report.md'})")


if __name__ == "__main__":
    main()

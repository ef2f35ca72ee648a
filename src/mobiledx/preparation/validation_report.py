"""The validation report (``data/validated/<name>/report.md``): what Great Expectations found, and what ingest did."""

from __future__ import annotations

from typing import Any

from mobiledx.preparation.validation import ValidationOutcome
from mobiledx.tables import markdown_table

_STATUS_ICONS = {"passed": "✅", "critical": "❌", "warning": "⚠️"}


def render_report(outcome: ValidationOutcome, dataset: str) -> str:
    """Render ``outcome`` as a Markdown report for ``dataset``."""
    summary = outcome.summary
    n_critical, n_warnings = len(outcome.critical_failures()), len(outcome.warnings())
    status = "✅ passed" if outcome.success else "❌ failed"
    lines = [
        f"# Data validation: {dataset}",
        "",
        f"**Status:** {status} ({n_critical} critical failure(s), {n_warnings} warning(s))",
        "",
        f"Images: {summary['n_images']} in {summary['n_groups']} groups. "
        f"Quarantined inputs: {summary['n_quarantined']}.",
        "",
        "## Expectations",
        "",
        *_table(
            ["", "Expectation", "Severity", "Unexpected", "Rule"],
            [
                [
                    _STATUS_ICONS[item.status],
                    f"`{item.name}`",
                    "critical" if item.critical else "warning",
                    item.unexpected_count,
                    item.detail,
                ]
                for item in outcome.expectations
            ],
        ),
        "",
        "## Classes",
        "",
        *_table(
            ["Class", "Images", "Share"],
            [
                [label, count, _percent(count, summary["n_images"])]
                for label, count in summary["class_counts"].items()
            ],
        ),
        "",
        "## Age",
        "",
        *_table(
            ["Known", "Missing", "Min", "Median", "Max"],
            [[summary["age"][key] for key in ("count", "missing", "min", "median", "max")]],
        ),
        "",
        "## Sex",
        "",
        *_table(["Sex", "Images"], [list(item) for item in summary["sex_counts"].items()]),
        "",
        "## Site",
        "",
        *_table(["Site", "Images"], [list(item) for item in summary["site_counts"].items()]),
        "",
        "## Quarantine",
        "",
        *_quarantine_lines(summary),
    ]
    if summary["quarantine_reasons"]:
        lines += ["", *_table(["Reason", "Inputs"], [list(item) for item in summary["quarantine_reasons"].items()])]
    lines += _ingest_sections(summary)
    lines += ["", "## Failures", ""]
    failed = outcome.critical_failures() + outcome.warnings()
    if not failed:
        lines.append("None.")
    for item in failed:
        lines += [
            f"### {_STATUS_ICONS[item.status]} `{item.name}` ({item.status})",
            "",
            f"{item.detail}: {item.unexpected_count} unexpected.",
            "",
        ]
        if item.examples:
            columns = list(dict.fromkeys(key for example in item.examples for key in example))
            rows = [[example.get(column, "") for column in columns] for example in item.examples]
            lines += [*_table(columns, rows), ""]
    return "\n".join(lines).rstrip() + "\n"


def _quarantine_lines(summary: dict) -> list[str]:
    """How many inputs were quarantined, and how listed images without a file count (validate.missing_files)."""
    total, counted = summary["n_quarantined"], summary.get("n_quarantined_counted", summary["n_quarantined"])
    missing = summary.get("n_missing_files", 0)
    if not missing or counted == total:  # nothing counted apart
        line = (f"Quarantined inputs: {total} ({summary['quarantined_fraction']:.2%} of "
                f"{summary['n_images'] + counted}).")
        if missing:
            line += (f" {missing} of them are images listed in the metadata without a file (a partial download), "
                     f"counted as quarantined (`validate.missing_files: refuse`); to train on the images present "
                     f"deliberately, set `validate.missing_files: allow`.")
        return [line]
    return [f"Quarantined inputs: {total}, of which {missing} are images listed in the metadata without a file "
            f"(a partial download), counted apart (`validate.missing_files: allow`): **the model sees a subset of "
            f"the collection**, and its model card says so. Refused inputs: {counted} "
            f"({summary['quarantined_fraction']:.2%} of {summary['n_images'] + counted}), the fraction "
            f"`validate.max_quarantined_fraction` limits."]


def _ingest_sections(summary: dict) -> list[str]:
    """What ingest reported: notes (e.g. a partial download), groups, normalisations, unfit images kept, licences."""
    lines = []
    if summary.get("notes"):
        lines += ["", "## Notes", "", *(f"- {note}" for note in summary["notes"])]
    if summary.get("grouping"):
        lines += ["", "## Groups", "", f"Splits keep groups whole: {summary['grouping']}."]
    lines += ["", "## Normalised values", ""]
    if summary.get("normalised"):
        lines += _table(["What", "Values"], [list(item) for item in summary["normalised"].items()])
    else:
        lines.append("None: every metadata value was used exactly as given.")
    near = summary.get("near_duplicates") or {}
    if near:
        done = {"group": f"{near.get('n_images_regrouped', 0)} image(s) moved into their near-duplicate's group",
                "quarantine": f"{near.get('n_quarantined', 0)} image(s) quarantined",
                "report": "listed only: they may cross train/val/test"}.get(near.get("policy"), "")
        lines += ["", f"## Near-duplicates (ingest.near_duplicates: {near.get('policy')})", "",
                  f"{near.get('n_pairs', 0)} pair(s) of images in different groups whose perceptual hashes differ by "
                  f"at most {near.get('max_distance')} bits" + (f": {done}." if near.get("n_pairs") else ".")]
        if near.get("pairs"):
            lines += ["", *_table(["Image", "Near-duplicate", "Distance", "Group", "Other group"],
                                  [[p["image_a"], p["image_b"], p["distance"], p["group_a"], p["group_b"]]
                                   for p in near["pairs"][:50]])]
            if len(near["pairs"]) > 50:
                lines.append(f"... and {len(near['pairs']) - 50} more (dataset.json lists them all).")
    if summary.get("unfit_images_kept"):
        lines += ["", "## Unfit images kept (ingest.unfit_images: keep)", "",
                  *_table(["Problem", "Images"], [list(item) for item in summary["unfit_images_kept"].items()])]
    if summary.get("license_counts"):
        licences = [list(item) for item in summary["license_counts"].items()]
        lines += ["", "## Licences", "", *_table(["Licence", "Images"], licences)]
    return lines


def _percent(count: int, total: int) -> str:
    """``count / total`` as a percentage, or a dash when ``total`` is zero."""
    return f"{count / total:.1%}" if total else "–"


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list]) -> list[str]:
    return markdown_table(header, rows, cell=_cell)

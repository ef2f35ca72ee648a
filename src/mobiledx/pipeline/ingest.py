"""Stage ingest: raw dataset → manifest, image cache, quarantine report."""

from __future__ import annotations

from mobiledx.data.intake import ImageFitness, ingest
from mobiledx.data.manifest import ScanOptions
from mobiledx.io import write_csv, write_json
from mobiledx.params import Params
from mobiledx.paths import DatasetPaths


def ingest_dataset(name: str, params: Params) -> None:
    """Scan the raw data with its adapter, decode every image once and write ``data/ingested/<name>/``."""
    paths = DatasetPaths(name)
    entry = params.dataset(name)
    settings = params.ingest
    result = ingest(entry.path, entry.kind, image_size=settings.image_size, images_path=paths.images,
                    workers=settings.workers or None, options=ScanOptions(labels=entry.labels),
                    group_by=entry.group_by,
                    fitness=ImageFitness(min_side=settings.min_image_side, max_aspect=settings.max_aspect_ratio,
                                         quarantine=settings.unfit_images == "quarantine"),
                    near_duplicates=settings.near_duplicates,
                    near_duplicate_distance=settings.near_duplicate_distance)
    write_csv(paths.manifest, result.manifest)
    write_csv(paths.quarantine, result.quarantine)
    write_json(paths.dataset_info, {
        "dataset": name, "kind": entry.kind, "classes": result.classes, "image_size": params.ingest.image_size,
        "n_images": len(result.manifest), "n_quarantined": len(result.quarantine), "raw_hash": result.raw_hash,
        "grouping": result.grouping, "normalised": result.normalised, "notes": result.notes,
        "unfit_images_kept": result.unfit_kept,
        "converted_modes": result.converted_modes,  # images not stored as 8-bit RGB, by source mode
        "n_missing_files": result.n_missing_files,  # listed without a file (validate.missing_files, model card)
        "ignored": result.ignored.to_dict("records"),  # companion files, duplicate copies: why, not quarantined
        "near_duplicates": result.near_duplicates,  # pairs across groups and what ingest.near_duplicates did
    })
    print(f"{name}: {len(result.manifest)} images ingested, {len(result.quarantine)} quarantined; {result.grouping}")
    near = result.near_duplicates
    if near["n_pairs"]:
        done = {"group": f"{near['n_images_regrouped']} image(s) moved into their near-duplicate's group",
                "quarantine": f"{near['n_quarantined']} image(s) quarantined",
                "report": "listed only (ingest.near_duplicates: report): they may cross splits"}[near["policy"]]
        print(f"NOTE {name}: {near['n_pairs']} near-duplicate pair(s) across groups (perceptual hash distance <= "
              f"{near['max_distance']}, e.g. {near['pairs'][0]['image_a']} and {near['pairs'][0]['image_b']}): "
              f"{done}; all listed in {paths.dataset_info}")
    for note in result.notes:
        print(f"NOTE {name}: {note}")

"""Stage ingest: raw dataset → manifest, image cache, quarantine report."""

from __future__ import annotations

from mobiledx.data.ingest import ingest
from mobiledx.io import write_csv, write_json
from mobiledx.params import Params
from mobiledx.paths import DatasetPaths


def ingest_dataset(name: str, params: Params) -> None:
    """Scan the raw data with its adapter, decode every image once and write ``data/ingested/<name>/``."""
    paths = DatasetPaths(name)
    entry = params.dataset(name)
    result = ingest(entry.path, entry.kind, image_size=params.ingest.image_size, images_path=paths.images,
                    workers=params.ingest.workers or None)
    write_csv(paths.manifest, result.manifest)
    write_csv(paths.quarantine, result.quarantine)
    write_json(paths.dataset_info, {
        "dataset": name, "kind": entry.kind, "classes": result.classes, "image_size": params.ingest.image_size,
        "n_images": len(result.manifest), "n_quarantined": len(result.quarantine), "raw_hash": result.raw_hash,
    })
    print(f"{name}: {len(result.manifest)} images ingested, {len(result.quarantine)} quarantined")

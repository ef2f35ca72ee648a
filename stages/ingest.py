"""Stage ingest: raw dataset → manifest, cached image array, quarantine report."""

from mobiledx.config import DatasetPaths, dataset_entry, parse_stage_args
from mobiledx.data.ingest import ingest
from mobiledx.io import write_csv, write_json


def main(argv=None) -> None:
    args, params = parse_stage_args(__doc__, argv)
    paths = DatasetPaths(args.dataset)
    entry = dataset_entry(params, args.dataset)
    settings = params["ingest"]
    out = paths.ingested
    result = ingest(entry.path, entry.kind, image_size=int(settings["image_size"]), images_path=out / "images.npy",
                    workers=int(settings["workers"]) or None)
    write_csv(out / "manifest.csv", result.manifest)
    write_csv(out / "quarantine.csv", result.quarantine)
    write_json(
        out / "dataset.json",
        {
            "dataset": args.dataset,
            "kind": entry.kind,
            "classes": result.classes,
            "image_size": int(settings["image_size"]),
            "n_images": len(result.manifest),
            "n_quarantined": len(result.quarantine),
            "raw_hash": result.raw_hash,
        },
    )
    print(f"{args.dataset}: {len(result.manifest)} images ingested, {len(result.quarantine)} quarantined")


if __name__ == "__main__":
    main()

"""Stage split: stratified, group-aware, seeded train/val/test assignment."""

from dataclasses import asdict

from mobiledx.config import DatasetPaths, parse_stage_args
from mobiledx.data.manifest import read_manifest
from mobiledx.io import read_json, write_csv, write_json
from mobiledx.splits import SplitConfig, class_counts, split_manifest


def main(argv=None) -> None:
    args, params = parse_stage_args(__doc__, argv)
    paths = DatasetPaths(args.dataset)
    manifest = read_manifest(paths.ingested / "manifest.csv")
    classes = read_json(paths.ingested / "dataset.json")["classes"]
    config = SplitConfig.from_params(params["split"])
    assignment = split_manifest(manifest, config, seed=int(params["seed"]))
    counts = class_counts(assignment, classes)
    write_csv(paths.split / "split.csv", assignment)
    write_json(paths.split / "split.json", {"seed": int(params["seed"]), **asdict(config)})  # logged by train
    write_csv(paths.split / "class_counts.csv", counts.rename_axis("label").reset_index())
    write_json(
        paths.split / "split_summary.json",
        {split: {"images": int(counts[split].sum()), "groups": int(assignment[assignment.split == split].group_id.nunique())}
         for split in counts.columns},
    )
    print(counts.to_string())


if __name__ == "__main__":
    main()

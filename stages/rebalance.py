"""Stage rebalance: sub-sample, weight, re-sample or augment the training split offline."""

from mobiledx.config import DatasetPaths, parse_stage_args
from mobiledx.data.cache import RowView, load_ingested
from mobiledx.io import NpyWriter, write_csv, write_json
from mobiledx.rebalance import AUGMENTATION_BATCH, RebalanceConfig, augmented_batches, rebalance


def main(argv=None) -> None:
    args, params = parse_stage_args(__doc__, argv)
    paths = DatasetPaths(args.dataset)
    config = RebalanceConfig.from_params(params["rebalance"])
    data = load_ingested(paths)
    seed = int(params["seed"])
    index, weights, sources = rebalance(data.split("train"), data.classes, config, seed=seed)
    originals = RowView(data.images, data.rows(index.loc[index["source"] == "original", "image_id"]))
    with NpyWriter(paths.rebalanced / "augmented.npy", data.images.shape[1:], max_rows=len(sources)) as augmented:
        for batch in augmented_batches(originals, sources, config.augmentation, seed, AUGMENTATION_BATCH):
            augmented.append(batch)
    write_csv(paths.rebalanced / "train_index.csv", index)
    write_json(paths.rebalanced / "class_weights.json", {
        "method": config.method, "train_fraction": config.train_fraction, "weights": weights,
        "samples_per_class": index.label.value_counts().sort_index().to_dict(), "augmented_images": len(sources),
    })
    print(f"{args.dataset}: {config.method}, {len(index)} training samples per epoch "
          f"({len(sources)} augmented), weights {weights}")


if __name__ == "__main__":
    main()

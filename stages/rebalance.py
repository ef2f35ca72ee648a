"""Stage rebalance: sub-sample, weight, re-sample or augment the training split offline."""

import numpy as np
import pandas as pd

from mobiledx.config import DatasetPaths, parse_stage_args
from mobiledx.data.cache import load_ingested
from mobiledx.io import write_csv, write_json, write_npy
from mobiledx.rebalance import RebalanceConfig, rebalance


def main(argv=None) -> None:
    args, params = parse_stage_args(__doc__, argv)
    paths = DatasetPaths(args.dataset)
    config = RebalanceConfig.from_params(params["rebalance"])
    data = load_ingested(paths)
    index, weights, augmented = rebalance(
        data.split("train"), data.classes, config, seed=int(params["seed"]),
        images_of=lambda ids: data.images[data.rows(pd.Series(ids))],
    )
    if augmented is None:
        augmented = np.zeros((0, *data.images.shape[1:]), np.uint8)
    write_csv(paths.rebalanced / "train_index.csv", index)
    write_npy(paths.rebalanced / "augmented.npy", augmented)
    write_json(paths.rebalanced / "class_weights.json", {
        "method": config.method, "train_fraction": config.train_fraction, "weights": weights,
        "samples_per_class": index.label.value_counts().sort_index().to_dict(), "augmented_images": len(augmented),
    })
    print(f"{args.dataset}: {config.method}, {len(index)} training samples per epoch "
          f"({len(augmented)} augmented), weights {weights}")


if __name__ == "__main__":
    main()

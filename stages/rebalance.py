"""Stage rebalance: class weights or random over-sampling of the training split."""

import pandas as pd

from mobiledx.config import DatasetPaths, parse_stage_args
from mobiledx.io import read_json, write_csv, write_json
from mobiledx.rebalance import rebalance


def main(argv=None) -> None:
    args, params = parse_stage_args(__doc__, argv)
    paths = DatasetPaths(args.dataset)
    classes = read_json(paths.ingested / "dataset.json")["classes"]
    assignment = pd.read_csv(paths.split / "split.csv", dtype=str)
    method = str(params["rebalance"]["method"])
    index, weights = rebalance(assignment[assignment.split == "train"], classes, method, seed=int(params["seed"]))
    write_csv(paths.rebalanced / "train_index.csv", index)
    write_json(paths.rebalanced / "class_weights.json", {"method": method, "weights": weights,
                                                         "samples_per_class": index.label.value_counts().to_dict()})
    print(f"{args.dataset}: {method}, {len(index)} training samples per epoch, weights {weights}")


if __name__ == "__main__":
    main()

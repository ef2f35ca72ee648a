"""Stage rebalance: sub-sample, weight, re-sample or augment the training split offline."""

from __future__ import annotations

from mobiledx.data.cache import RowView, load_ingested
from mobiledx.io import NpyWriter, write_csv, write_json
from mobiledx.params import Params
from mobiledx.paths import DatasetPaths
from mobiledx.preparation.resampling import AUGMENTATION_BATCH, augmented_batches, rebalance


def rebalance_dataset(name: str, params: Params) -> None:
    """Write the training index, the class weights and (method ``augment``) the new images, streamed."""
    paths = DatasetPaths(name)
    config = params.rebalance
    data = load_ingested(paths)
    index, weights, sources = rebalance(data.split("train"), data.classes, config, seed=params.seed)
    originals = RowView(data.images, data.rows(index.loc[index["source"] == "original", "image_id"]))
    with NpyWriter(paths.augmented, data.images.shape[1:], max_rows=len(sources)) as augmented:
        for batch in augmented_batches(originals, sources, config.augmentation, params.seed, AUGMENTATION_BATCH):
            augmented.append(batch)
    write_csv(paths.train_index, index)
    write_json(paths.class_weights, {
        "method": config.method, "train_fraction": config.train_fraction, "weights": weights,
        "samples_per_class": index.label.value_counts().sort_index().to_dict(), "augmented_images": len(sources),
    })
    print(f"{name}: {config.method}, {len(index)} training samples per epoch ({len(sources)} augmented), "
          f"weights {weights}")

"""Stage train: fit the classifier, log params and per-epoch metrics to a new MLflow run."""

import numpy as np
import pandas as pd

from mobiledx import plots, tracking
from mobiledx.config import DatasetPaths, parse_stage_args
from mobiledx.data.cache import load_ingested
from mobiledx.io import atomic_path, read_json, write_csv, write_json
from mobiledx.metadata import MetadataEncoder, save_encoder
from mobiledx.rebalance import training_rows
from mobiledx.training import TrainConfig, best_epoch, fit


def main(argv=None) -> None:
    args, params = parse_stage_args(__doc__, argv)
    paths = DatasetPaths(args.dataset)
    config = TrainConfig.from_params(params)
    data = load_ingested(paths)
    index = pd.read_csv(paths.rebalanced / "train_index.csv", dtype=str)
    balance = read_json(paths.rebalanced / "class_weights.json")
    augmented = np.load(paths.rebalanced / "augmented.npy")
    images = np.concatenate([data.images, augmented]) if len(augmented) else data.images
    train_rows, source_rows = training_rows(index, data.rows, len(data.images))
    val = data.split("val")
    encoder = MetadataEncoder.fit(data.manifest.iloc[np.unique(source_rows)]) if config.metadata else None
    tags = tracking.run_tags(args.dataset, data.info["kind"], data.info["raw_hash"])

    import mlflow

    with tracking.start_run(args.dataset, tags) as run:
        mlflow.log_params({
            "lr": config.lr, "seed": config.seed, **{f"train.{k}": v for k, v in params["train"].items()},
            "image_size": data.info["image_size"], "classes": ",".join(data.classes),
            "rebalance.method": balance["method"], "rebalance.train_fraction": balance["train_fraction"],
            "n_train_samples": len(index), "n_augmented": len(augmented), "n_val": len(val),
            "metadata_features": ",".join(encoder.feature_names) if encoder else "",
        })
        model, history = fit(
            config, images, data.classes,
            train_rows=train_rows, train_labels=index["label"],
            train_weights=index["label"].map(balance["weights"]).to_numpy(),
            val_rows=data.rows(val["image_id"]), val_labels=val["label"],
            callbacks=[tracking.epoch_logger()],
            train_metadata=encoder.transform(data.manifest.iloc[source_rows]) if encoder else None,
            val_metadata=encoder.transform(data.manifest.iloc[data.rows(val["image_id"])]) if encoder else None,
        )
        out = paths.model
        with atomic_path(out / "model.keras") as tmp:
            model.save(tmp)
        save_encoder(out / "metadata_encoder.json", encoder)
        write_csv(out / "history.csv", history)
        plots.training_curves(history, out / "training_curves.png", f"{args.dataset} (lr={config.lr})")
        mlflow.log_artifact(str(out / "training_curves.png"), artifact_path="plots")
        mlflow.log_artifact(str(out / "metadata_encoder.json"), artifact_path="model")
        best = best_epoch(history, config.monitor)
        write_json(out / "train_metrics.json", {
            "epochs_run": len(history), "best_epoch": int(best["epoch"]),
            **{k: float(v) for k, v in best.items() if k not in ("epoch", "phase")},
        })
        write_json(out / "run.json", tracking.run_record(run))


if __name__ == "__main__":
    main()

"""Stage train: fit the classifier, log params and per-epoch metrics to a new MLflow run.

After every epoch the training state is backed up under ``.dvc/tmp/train-backup/``: re-running the
stage after a crash or kill resumes with the next epoch, in the same MLflow run. With
``train.strategy: multi_worker`` run this script (not ``dvc repro``) on every machine with its own
``TF_CONFIG``; only the chief writes outputs and logs to MLflow.
"""

import contextlib

import numpy as np
import pandas as pd

from mobiledx import plots, tracking
from mobiledx.config import DatasetPaths, parse_stage_args
from mobiledx.data.cache import ImageStack, MappedImages, load_ingested
from mobiledx.io import atomic_path, read_json, write_csv, write_json
from mobiledx.metadata import MetadataEncoder, save_encoder
from mobiledx.rebalance import training_rows
from mobiledx.training import (
    TrainConfig,
    TrainingBackup,
    best_epoch,
    cluster_workers,
    distribution_strategy,
    fit,
    is_chief,
    save_worker_copy,
    task_name,
    training_key,
)


def training_inputs(paths: DatasetPaths) -> list:
    """The data files the training reads (their hashes are part of the backup key)."""
    files = [paths.ingested / name for name in ("images.npy", "manifest.csv", "dataset.json")]
    files += [paths.split / name for name in ("split.csv", "split.json")]
    files += [paths.rebalanced / name for name in ("train_index.csv", "augmented.npy", "class_weights.json")]
    return [path for path in files if path.exists()]


def main(argv=None) -> None:
    args, params = parse_stage_args(__doc__, argv)
    paths = DatasetPaths(args.dataset)
    config = TrainConfig.from_params(params)
    distribution_strategy(config.strategy)  # before any other TensorFlow op (multi_worker needs that)
    chief = is_chief(config.strategy)  # only the chief writes outputs and logs to MLflow
    data = load_ingested(paths)
    index = pd.read_csv(paths.rebalanced / "train_index.csv", dtype=str)
    balance = read_json(paths.rebalanced / "class_weights.json")
    augmented = MappedImages(paths.rebalanced / "augmented.npy")
    images = ImageStack([data.images, augmented])  # read batch by batch, never concatenated
    train_rows, source_rows = training_rows(index, data.rows, len(data.images))
    val = data.split("val")
    encoder = MetadataEncoder.fit(data.manifest.iloc[np.unique(source_rows)]) if config.metadata else None
    tags = tracking.run_tags(args.dataset, data.info["kind"], data.info["raw_hash"])
    key = training_key(params, training_inputs(paths), code=[__file__], workers=cluster_workers(config.strategy))
    backup = TrainingBackup.for_training(args.dataset, key, task=task_name(config.strategy))

    import mlflow

    with tracking.training_run(args.dataset, tags, backup) if chief else contextlib.nullcontext() as run:
        if chief:
            mlflow.log_params({
                "lr": config.lr, "seed": config.seed, **{f"train.{k}": v for k, v in params["train"].items()},
                "image_size": data.info["image_size"], "classes": ",".join(data.classes),
                **{f"split.{k}": v for k, v in read_json(paths.split / "split.json").items() if k != "seed"},
                "rebalance.method": balance["method"], "rebalance.train_fraction": balance["train_fraction"],
                "n_train_samples": len(index), "n_augmented": len(augmented), "n_val": len(val),
                "metadata_features": ",".join(encoder.feature_names) if encoder else "",
            })
        model, history = fit(
            config, images, data.classes,
            train_rows=train_rows, train_labels=index["label"],
            train_weights=index["label"].map(balance["weights"]).to_numpy(),
            val_rows=data.rows(val["image_id"]), val_labels=val["label"],
            callbacks=[tracking.epoch_logger()] if chief else [],
            train_metadata=encoder.transform(data.manifest.iloc[source_rows]) if encoder else None,
            val_metadata=encoder.transform(data.manifest.iloc[data.rows(val["image_id"])]) if encoder else None,
            backup=backup,
        )
        if not chief:  # a multi_worker worker: saves to a temporary folder (Keras' pattern), writes no output
            save_worker_copy(model)
            if backup:
                backup.remove()
            return
        # Everything the training produced is on disk before the next MLflow call: a tracking
        # failure from here on fails the stage but never loses the model or its metrics.
        out = paths.model
        with atomic_path(out / "model.keras") as tmp:
            model.save(tmp)
        save_encoder(out / "metadata_encoder.json", encoder)
        write_csv(out / "history.csv", history)
        plots.training_curves(history, out / "training_curves.png", f"{args.dataset} (lr={config.lr})")
        best = best_epoch(history, config.monitor)
        write_json(out / "train_metrics.json", {
            "epochs_run": len(history), "best_epoch": int(best["epoch"]),
            **{k: float(v) for k, v in best.items() if k not in ("epoch", "phase")},
        })
        tracking.flush_epoch_metrics()  # epochs the tracking store missed during training, if any
        mlflow.log_artifact(str(out / "training_curves.png"), artifact_path="plots")
        mlflow.log_artifact(str(out / "metadata_encoder.json"), artifact_path="model")
        write_json(out / "run.json", tracking.run_record(run))  # last: evaluate/export resume this run
    if backup:
        backup.remove()  # outputs written and the run closed: nothing left to resume


if __name__ == "__main__":
    main()

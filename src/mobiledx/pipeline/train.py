"""Stage train: fit the classifier, log params and per-epoch metrics to a new MLflow run.

After every epoch the training state is backed up under ``.dvc/tmp/train-backup/``: re-running the
stage after a crash or kill resumes with the next epoch, in the same MLflow run. With
``train.strategy: multi_worker`` every machine runs ``python stages/train.py <dataset>`` with its own
``TF_CONFIG``; only the chief writes outputs and logs to MLflow.

TensorFlow and MLflow load only once the ImageNet weights preflight has passed, so that an offline
machine fails within about two seconds: the training wing (which imports TensorFlow at its top) and
MLflow are imported in the stage's body, after it.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd

from mobiledx.codedeps import code_closure
from mobiledx.data.cache import ImageStack, MappedImages, load_ingested
from mobiledx.evaluation import plots
from mobiledx.evaluation.headline import write_headline
from mobiledx.io import atomic_path, read_json, write_csv, write_json
from mobiledx.models.backbones import preflight_weights
from mobiledx.models.patient_features import MetadataEncoder, save_encoder
from mobiledx.params import Params
from mobiledx.paths import DatasetPaths
from mobiledx.preparation.resampling import training_rows
from mobiledx.tracking import mlflow_runs
from mobiledx.training.backup import TrainingBackup, training_key

STAGE_SCRIPT = "stages/train.py"


def training_inputs(paths: DatasetPaths) -> list:
    """The data files the training reads (their hashes are part of the backup key)."""
    files = [paths.images, paths.manifest, paths.dataset_info, paths.assignment, paths.split_settings,
             paths.train_index, paths.augmented, paths.class_weights]
    return [path for path in files if path.exists()]


def train_dataset(name: str, params: Params) -> None:
    """Train ``name``'s classifier and write ``data/models/<name>/`` (see the module docstring)."""
    paths = DatasetPaths(name)
    config = params.train_config()
    preflight_weights(config.backbone, config.weights)  # before TensorFlow: offline imagenet fails in ~0.5-2 s
    # Only now do TensorFlow and MLflow load (about 4 s): the training wing imports TensorFlow at its top.
    import mlflow

    from mobiledx.tracking.mlflow_datasets import log_split_inputs
    from mobiledx.training.callbacks import MlflowEpochLogger
    from mobiledx.training.distribute import Cluster, save_worker_copy
    from mobiledx.training.loop import TrainingData, best_epoch, fit

    cluster = Cluster.of(config.strategy)  # before any other TensorFlow op (multi_worker needs that)
    data = load_ingested(paths)
    index = pd.read_csv(paths.train_index, dtype=str)
    balance = read_json(paths.class_weights)
    augmented = MappedImages(paths.augmented)
    train_rows, source_rows = training_rows(index, data.rows, len(data.images))
    val = data.split("val")
    val_rows = data.rows(val["image_id"])
    encoder = MetadataEncoder.fit(data.manifest.iloc[np.unique(source_rows)]) if config.metadata else None
    inputs = TrainingData(
        images=ImageStack([data.images, augmented]),  # read batch by batch, never concatenated
        classes=data.classes, train_rows=train_rows, train_labels=index["label"],
        train_weights=index["label"].map(balance["weights"]).to_numpy(), val_rows=val_rows, val_labels=val["label"],
        train_metadata=encoder.transform(data.manifest.iloc[source_rows]) if encoder else None,
        val_metadata=encoder.transform(data.manifest.iloc[val_rows]) if encoder else None,
    )
    key = training_key(config, training_inputs(paths), code=code_closure(STAGE_SCRIPT), workers=cluster.workers)
    backup = TrainingBackup.for_training(name, key, task=cluster.task)
    if cluster.is_chief:  # the one process that writes the outputs and logs to MLflow
        with mlflow_runs.training_run(name, mlflow_runs.run_tags(name, data.info["kind"], data.info["raw_hash"]),
                                      backup) as run:
            mlflow.log_params({
                "lr": config.lr, "seed": config.seed, **{f"train.{k}": v for k, v in asdict(params.train).items()},
                "image_size": data.info["image_size"], "classes": ",".join(data.classes),
                **{f"split.{k}": v for k, v in read_json(paths.split_settings).items() if k != "seed"},
                "rebalance.method": balance["method"], "rebalance.train_fraction": balance["train_fraction"],
                "n_train_samples": len(index), "n_augmented": len(augmented), "n_val": len(val),
                "metadata_features": ",".join(encoder.feature_names) if encoder else "",
            })
            log_split_inputs(name, params.dataset(name).path, data.info, data.manifest, data.assignment)
            # The epoch logger also tags the run with its environment (env.*) when fit() has configured TensorFlow.
            model, history = fit(config, inputs, callbacks=[MlflowEpochLogger()], backup=backup, cluster=cluster)
            # Everything the training produced is on disk before the next MLflow call: a tracking
            # failure from here on fails the stage but never loses the model or its metrics.
            _write_outputs(name, config, paths, model, history, best_epoch(history, config.monitor), encoder)
            mlflow_runs.flush_epoch_metrics()  # epochs the tracking store missed during training, if any
            mlflow.log_artifact(str(paths.training_curves), artifact_path="plots")
            mlflow.log_artifact(str(paths.encoder), artifact_path="model")
            write_json(paths.run_record, mlflow_runs.run_record(run))  # last: evaluate/export resume this run
    else:  # a multi_worker worker: trains in step with the chief, writes no output and logs nothing
        model, _ = fit(config, inputs, callbacks=[], backup=backup, cluster=cluster)
        save_worker_copy(model)  # to a temporary folder (Keras' pattern)
    if backup:
        backup.remove()  # outputs written and the run closed: nothing left to resume


def _write_outputs(name: str, config, paths: DatasetPaths, model, history: pd.DataFrame, best: pd.Series,
                   encoder: MetadataEncoder | None) -> None:
    """The chief's outputs: the model, the metadata encoder, the history, its curves and the headline."""
    with atomic_path(paths.keras_model) as tmp:
        model.save(tmp)
    save_encoder(paths.encoder, encoder)
    write_csv(paths.history, history)
    plots.training_curves(history, paths.training_curves, f"{name} (lr={config.lr})")
    write_headline(paths.train_metrics, name, {
        "epochs_run": len(history), "best_epoch": int(best["epoch"]),
        **({"best_val_loss": float(best["val_loss"])} if "val_loss" in best else {})})

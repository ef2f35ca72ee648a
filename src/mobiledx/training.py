"""Training: tf.data input with online augmentation, Adam, early stopping, per-epoch MLflow logging.

Two things make long trainings dependable:

- **Resume after a crash** (:class:`TrainingBackup`): after every epoch the complete training state
  (weights, optimizer, the epoch and phase, the history so far, early stopping's best weights and
  counters, ReduceLROnPlateau's counters) is written, crash-safe, to a folder outside DVC's outputs,
  ``.dvc/tmp/train-backup/<dataset>/<key>/``. ``<key>`` hashes everything that determines the
  training, so a backup is only ever reused by the identical training. Re-running the stage after a
  kill resumes with the next epoch; the stage deletes the backup once its outputs are written.
- **tf.distribute** (``train.strategy``): ``default`` (one device), ``mirrored`` (all GPUs of one
  machine) or ``multi_worker`` (several machines, ``TF_CONFIG``; see :func:`distribution_strategy`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd


@dataclass
class TrainConfig:
    """The ``train`` params (plus top-level ``lr`` and ``seed``); see params.yaml for their meaning."""

    lr: float
    seed: int
    epochs: int
    batch_size: int
    alpha: float
    weights: str
    bn_momentum: float | None
    dense_units: int
    dropout: float
    patience: int
    monitor: str
    bn_calibration_images: int
    backbone: str = "mobilenetv2"
    head: str = "dense"
    metadata: bool = False
    metadata_units: int = 64
    attention_heads: int = 16
    augmentation: str = "mobiledx"
    loss: str = "crossentropy"
    focal_gamma: float = 2.0
    adam_epsilon: float = 1e-7
    schedule: str = "constant"
    plateau_patience: int = 3
    restart_epochs: int = 10
    freeze_epochs: int = 0
    unfreeze_layers: int = 0
    fine_tune_lr_factor: float = 0.1
    strategy: str = "default"

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "TrainConfig":
        train = dict(params["train"])
        unknown = set(train) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown train params {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        casts = {name: field.type for name, field in cls.__dataclass_fields__.items()}
        values = {}
        for name, value in train.items():
            kind = casts[name]
            if value is None or kind in ("str", "float | None"):
                values[name] = None if value is None else (str(value) if kind == "str" else float(value))
            else:
                values[name] = {"int": int, "float": float, "bool": bool}[kind](value)
        return cls(lr=float(params["lr"]), seed=int(params["seed"]), **values)


LOSSES = ("crossentropy", "focal")


def make_loss(name: str, focal_gamma: float = 2.0):
    """Categorical cross-entropy (binary cross-entropy for the sigmoid head's ``[1-p, p]`` output) or
    focal loss; class weighting comes in as sample weights from the rebalance stage."""
    import keras

    if name not in LOSSES:
        raise ValueError(f"train.loss must be one of {LOSSES}, got {name!r}")
    if name == "focal":
        return keras.losses.CategoricalFocalCrossentropy(alpha=1.0, gamma=focal_gamma)
    return keras.losses.CategoricalCrossentropy()


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic (same params + data = same model)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def make_dataset(
    images,
    rows: np.ndarray,
    targets: np.ndarray,
    sample_weights: np.ndarray | None,
    batch_size: int,
    shuffle_seed: int | None = None,
    augmenter=None,
    metadata: np.ndarray | None = None,
):
    """A batched ``tf.data`` pipeline over ``images[rows]``: gather → (augment) → float32, prefetched.

    Only row indices go through the graph; each batch's pixels are gathered from ``images`` (an
    array, or the memory-mapped image cache: :class:`mobiledx.data.cache.MappedImages` or
    ``ImageStack``) when the batch is made, so memory is bounded by the batches in flight, not by
    the dataset. With ``metadata`` (one row per entry of ``rows``) the inputs are
    ``{"image": pixels, "metadata": features}``.
    """
    import tensorflow as tf

    size = images.shape[1:]
    columns = [rows.astype(np.int64), targets.astype(np.float32)]
    if sample_weights is not None:
        columns.append(sample_weights.astype(np.float32))
    if metadata is not None:
        columns.append(metadata.astype(np.float32))
    dataset = tf.data.Dataset.from_tensor_slices(tuple(columns))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(rows), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)

    def gather(batch_rows):
        pixels = tf.numpy_function(lambda r: images[r], [batch_rows], tf.uint8, stateful=False)
        pixels = tf.cast(tf.ensure_shape(pixels, (None, *size)), tf.float32)
        if augmenter is not None:
            pixels = augmenter(pixels, training=True)
        return pixels

    def to_inputs(batch_rows, *rest):
        if metadata is None:
            return (gather(batch_rows), *rest)
        *rest, features = rest
        return ({"image": gather(batch_rows), "metadata": features}, *rest)

    dataset = dataset.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE)
    # Under tf.distribute the pipeline is sharded by element (batch), the only policy that works for
    # an in-memory source: every worker runs the same seeded pipeline and keeps its share of each batch.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


# Peak memory of one training step, fitted to measured peaks (MobileNetV2 alpha 0.35/1.0 at 96/224 px,
# MobileNetV3Large + Soft-Attention at 224 px; batch 16-64; 2-core CPU, TF 2.21): a fixed 1.2 GiB
# (TensorFlow, the libraries, the input pipeline) plus 0.9 x 4 bytes per activation value per image in
# the batch, plus weights, gradients and Adam's two moments. Within about +-15 % of those peaks.
MEMORY_BASE_BYTES = int(1.2 * 2**30)
ACTIVATION_BYTES = 0.9 * 4
PARAMETER_BYTES = 4 * 4


class TrainingMemoryError(MemoryError):
    """The training would not fit in the memory this machine has available (raised before it starts)."""


def activation_values(model) -> int:
    """Values per image in all layer outputs of ``model`` (nested models included)."""
    total = 0
    for layer in model.layers:
        if getattr(layer, "layers", None):
            total += activation_values(layer)
            continue
        outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        total += sum(int(np.prod(tensor.shape[1:])) for tensor in outputs)
    return total


def estimate_training_memory(model, batch_size: int) -> int:
    """Estimated peak resident memory (bytes) of training ``model`` with ``batch_size`` images per step."""
    return int(MEMORY_BASE_BYTES + ACTIVATION_BYTES * activation_values(model) * batch_size
               + PARAMETER_BYTES * model.count_params())


def available_memory() -> int | None:
    """Bytes of memory this process can still use: ``MemAvailable``, capped by a cgroup limit if any."""
    limits = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:
            limits.append(int(limit) - usage)
    return min(limits) if limits else None


def check_training_memory(model, config: "TrainConfig", image_size: int, replicas: int = 1) -> None:
    """Print the estimated peak memory of the training; raise :class:`TrainingMemoryError`, naming the
    fix, when it exceeds what is available, before anything is trained (instead of being OOM-killed)."""
    per_replica = max(1, config.batch_size // replicas)
    needed = estimate_training_memory(model, per_replica) + (replicas - 1) * (
        estimate_training_memory(model, per_replica) - MEMORY_BASE_BYTES)
    available = available_memory()
    gib = 2**30
    what = f"{config.backbone}, alpha {config.alpha}, {image_size} px, batch {config.batch_size}"
    print(f"mobiledx: estimated peak memory of training: {needed / gib:.1f} GiB ({what}); available: "
          f"{'unknown' if available is None else f'{available / gib:.1f} GiB'}", flush=True)
    if available is None or needed <= available:
        return
    smaller = max(1, config.batch_size // 2)
    hint = (f"lower train.batch_size (at {smaller}: about {estimate_training_memory(model, smaller) / gib:.1f} GiB)"
            if config.batch_size > 1 else "lower ingest.image_size or train.alpha")
    raise TrainingMemoryError(
        f"training needs about {needed / gib:.1f} GiB of memory ({what}), but only {available / gib:.1f} GiB "
        f"is available. Fix: {hint}, or a smaller "
        f"ingest.image_size or train.alpha, or free memory (other programs, parallel `dvc queue` workers)."
    )


def one_hot(labels: pd.Series, classes: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {classes}")
    return np.eye(len(classes), dtype=np.float32)[[index[label] for label in labels]]


def build_model(config: TrainConfig, num_classes: int, image_size: int, metadata_features: int = 0):
    """The classifier the ``train`` params describe."""
    from mobiledx.models import build_classifier

    return build_classifier(
        num_classes=num_classes, image_size=image_size, backbone=config.backbone, alpha=config.alpha,
        weights=config.weights, head=config.head, dense_units=config.dense_units, dropout=config.dropout,
        bn_momentum=config.bn_momentum, metadata_features=metadata_features, metadata_units=config.metadata_units,
        attention_heads=config.attention_heads,
    )


def set_backbone_trainable(model, trainable: bool, top_layers: int = 0) -> None:
    """Freeze the backbone, or unfreeze its top ``top_layers`` layers (0 = all). BatchNorm layers stay
    frozen while fine-tuning a partly frozen backbone, as Keras recommends for transfer learning."""
    import keras

    from mobiledx.models import backbone_layer

    backbone = backbone_layer(model)
    if not trainable:
        backbone.trainable = False
        return
    backbone.trainable = True
    layers = backbone.layers
    boundary = len(layers) - top_layers if 0 < top_layers < len(layers) else 0
    for position, layer in enumerate(layers):
        fine_tuned = position >= boundary
        layer.trainable = fine_tuned and not (boundary > 0 and isinstance(layer, keras.layers.BatchNormalization))


def fit(
    config: TrainConfig,
    images,
    classes: list[str],
    train_rows: np.ndarray,
    train_labels: pd.Series,
    train_weights: np.ndarray,
    val_rows: np.ndarray,
    val_labels: pd.Series,
    callbacks: list | None = None,
    train_metadata: np.ndarray | None = None,
    val_metadata: np.ndarray | None = None,
    backup: "TrainingBackup | None" = None,
):
    """Build and train the classifier; returns ``(model, history DataFrame)`` (best weights restored).

    With ``train.freeze_epochs > 0`` training has two phases: the backbone frozen for that many
    epochs, then its top ``train.unfreeze_layers`` layers (0 = all) fine-tuned at
    ``lr × train.fine_tune_lr_factor`` for the remaining epochs. ``*_metadata``: encoded metadata per row.

    ``backup``: saves the training state after every epoch and, if it holds the state of an
    interrupted run of this same training, resumes from it (see :class:`TrainingBackup`).
    ``train.batch_size`` is the GLOBAL batch: with ``train.strategy`` on N replicas each replica
    gets ``batch_size / N`` examples per step. ``images``: see :func:`make_dataset`.
    """
    import keras

    from mobiledx.augmentation import augmentation_layers
    from mobiledx.schedules import LearningRateLogger, learning_rate, schedule_callbacks

    strategy = distribution_strategy(config.strategy)  # first: multi_worker needs it before any TF op
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(f"train.batch_size ({config.batch_size}) is the global batch and must be divisible by "
                         f"the {replicas} replicas of train.strategy={config.strategy}")
    if replicas > 1:
        print(f"mobiledx: {config.strategy} strategy, {replicas} replicas: global batch {config.batch_size} = "
              f"{config.batch_size // replicas} per replica", flush=True)
    make_deterministic(config.seed)
    metadata_features = 0 if train_metadata is None else train_metadata.shape[1]
    with strategy.scope():
        model = build_model(config, len(classes), images.shape[1], metadata_features)
    check_training_memory(model, config, images.shape[1], replicas)
    if config.strategy != "default":
        _patch_symbolic_build(model)
    augmenter = augmentation_layers(config.augmentation, config.seed)
    train_data = make_dataset(
        images, train_rows, one_hot(train_labels, classes), train_weights, config.batch_size,
        shuffle_seed=config.seed, augmenter=augmenter, metadata=train_metadata,
    )
    val_data = make_dataset(images, val_rows, one_hot(val_labels, classes), None, config.batch_size,
                            metadata=val_metadata)
    steps_per_epoch = int(np.ceil(len(train_rows) / config.batch_size))
    calibration = calibration_batches(images, train_rows, train_metadata, config.bn_calibration_images,
                                      config.batch_size, config.seed)

    phases = [(config.epochs, config.lr)]
    if 0 < config.freeze_epochs < config.epochs:
        phases = [(config.freeze_epochs, config.lr), (config.epochs, config.lr * config.fine_tune_lr_factor)]
    phase_names = ["full"] if len(phases) == 1 else ["frozen", "fine_tune"]

    state = _resume_state(backup, strategy, cluster_workers(config.strategy), model)
    rows: list[dict] = list(state["history"]) if state else []
    columns: list[str] = list(state.get("history_columns") or []) if state else []
    completed = state["epoch"] if state else 0
    if state:
        _advance_shuffle(train_data, completed)
        # The random-number states of the augmentation (in tf.data) and of the model (dropout).
        for variable, value in zip(_rng_variables(augmenter), state.get("augmenter") or []):
            variable.assign(np.asarray(value, dtype=variable.dtype))
        with strategy.scope():
            for variable, value in zip(_rng_variables(model), state.get("model_rng") or []):
                variable.assign(np.asarray(value, dtype=variable.dtype))
        done = state["finished"] and state["phase"] == len(phases) - 1
        print(f"mobiledx: resuming from epoch {completed}: epochs 1-{completed} restored from the backup in "
              f"{backup.directory}; " + ("training had already finished" if done else
                                         f"training continues with epoch {completed + 1}"), flush=True)
    weights_restored = False
    for phase, (until_epoch, phase_lr) in enumerate(phases):
        if state and (phase < state["phase"] or (phase == state["phase"] and state["finished"])):
            continue  # this phase was completed before the interruption
        if len(phases) > 1:
            set_backbone_trainable(model, trainable=phase == 1, top_layers=config.unfreeze_layers)
        with strategy.scope():
            model.compile(
                optimizer=keras.optimizers.Adam(
                    learning_rate=learning_rate(config.schedule, phase_lr, steps_per_epoch, config.restart_epochs),
                    epsilon=config.adam_epsilon,
                ),
                loss=make_loss(config.loss, config.focal_gamma),
                metrics=["accuracy"],
            )
        resume_in_phase = bool(state) and phase == state["phase"]
        if state and not weights_restored:
            backup.restore(model, state, strategy, optimizer=resume_in_phase)
            weights_restored = True
        plateau = schedule_callbacks(config.schedule, config.monitor, config.plateau_patience)
        early_stopping = keras.callbacks.EarlyStopping(
            monitor=config.monitor, patience=config.patience, restore_best_weights=True, verbose=1
        )
        progress = _TrainingProgress(phase, phase_names[phase], rows, columns, completed, backup, early_stopping,
                                     plateau[0] if plateau else None, state if resume_in_phase else None, augmenter)
        # An interrupted phase that early stopping had already ended runs no more epochs: fit() then
        # only restores its best weights, as the uninterrupted run did.
        last_epoch = completed if resume_in_phase and state["stopped"] else until_epoch
        model.fit(
            train_data,
            validation_data=val_data,
            initial_epoch=completed,
            epochs=max(last_epoch, completed),
            callbacks=[
                BatchNormCalibration(calibration),
                LearningRateLogger(),
                *plateau,
                early_stopping,
                progress,  # saves the state the callbacks above have updated...
                *(callbacks or []),  # ...before e.g. MLflow logs the epoch (a resumed stage logs what is missing)
            ],
            shuffle=False,  # the tf.data pipeline already shuffles, seeded
            verbose=2,
        )
        completed = progress.completed
    if state and not weights_restored:  # every phase had finished: the final (best) weights
        backup.restore(model, state, strategy, optimizer=False)
    history = pd.DataFrame(rows)
    return model, history[columns] if columns else history


# Keras 3's EpochIterator creates two iterators over a dataset of known length per epoch: one when
# the epoch starts and a fresh one after its last batch (keras/src/trainers/epoch_iterator.py).
KERAS_ITERATORS_PER_EPOCH = 2


def _advance_shuffle(dataset, epochs: int) -> None:
    """Move the seeded reshuffle of ``dataset`` on by ``epochs`` epochs, as in an uninterrupted run.

    ``shuffle(seed=..., reshuffle_each_iteration=True)`` draws a new order each time an iterator is
    created; creating (not consuming) as many iterators as ``fit()`` did replays those draws, so a
    resumed training sees the batches the uninterrupted one would have seen (the augmentation's
    random-number state is restored from the backup): tests/unit/test_training.py checks that a
    resumed training ends with exactly the weights of an uninterrupted one.
    """
    for _ in range(epochs * KERAS_ITERATORS_PER_EPOCH):
        iter(dataset)


def _TrainingProgress(phase: int, phase_name: str, rows: list, columns: list, completed: int, backup,
                      early_stopping, plateau, restore, augmenter=None):
    """Keras callback: records each epoch's history row and, with a ``backup``, saves the training state.

    ``restore``: the backed-up state to continue from (same phase): early stopping's and
    ReduceLROnPlateau's counters and best weights are put back after their ``on_train_begin`` reset.
    """
    import keras

    class _Progress(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.completed = completed

        def on_train_begin(self, logs=None) -> None:
            if restore:
                saved = restore["early_stopping"]
                early_stopping.wait, early_stopping.best = saved["wait"], saved["best"]
                early_stopping.best_epoch = saved["best_epoch"]
                early_stopping.stopped_epoch = restore["epoch"] - 1 if restore["stopped"] else 0
                if restore.get("best_weights"):
                    early_stopping.best_weights = backup.read_arrays(restore["best_weights"])
                if plateau is not None and restore.get("plateau"):
                    for name, value in restore["plateau"].items():
                        setattr(plateau, name, value)

        def on_epoch_end(self, epoch: int, logs=None) -> None:
            rows.append({"epoch": epoch + 1, "phase": phase_name, **{k: float(v) for k, v in (logs or {}).items()}})
            columns[:] = list(rows[-1])
            self.completed = epoch + 1
            if backup is None:
                return
            improved = early_stopping.best_weights is not None and early_stopping.best_epoch == epoch
            backup.save(
                {
                    "epoch": epoch + 1, "phase": phase, "finished": False, "stopped": bool(self.model.stop_training),
                    "history": rows, "history_columns": columns,
                    "early_stopping": {"wait": int(early_stopping.wait), "best": _plain(early_stopping.best),
                                       "best_epoch": int(early_stopping.best_epoch)},
                    "plateau": None if plateau is None else {
                        "wait": int(plateau.wait), "best": _plain(plateau.best),
                        "cooldown_counter": int(plateau.cooldown_counter)},
                    **_rng_states(self.model, augmenter),
                },
                weights=self.model.get_weights(),
                optimizer=[np.asarray(v) for v in self.model.optimizer.variables],
                best_weights=early_stopping.best_weights if improved else None,
            )

        def on_train_end(self, logs=None) -> None:
            if backup is not None:  # the phase's end state, after early stopping restored its best weights
                backup.save({"epoch": self.completed, "phase": phase, "finished": True, "stopped": False,
                             "history": rows, "history_columns": columns, **_rng_states(self.model, augmenter)},
                            weights=self.model.get_weights())

    return _Progress()


def _rng_variables(layer) -> list:
    """The ``SeedGenerator`` states of ``layer`` (not among its weights)."""
    if layer is None:
        return []
    return [v for v in layer.variables if v.path.endswith("seed_generator_state")]


def _rng_states(model, augmenter) -> dict:
    return {"augmenter": [np.asarray(v).tolist() for v in _rng_variables(augmenter)],
            "model_rng": [np.asarray(v).tolist() for v in _rng_variables(model)]}


def _plain(value):
    return None if value is None else float(value)


# --- tf.distribute -------------------------------------------------------------------------------

STRATEGIES = ("default", "mirrored", "multi_worker")
_STRATEGIES: dict[str, Any] = {}


def distribution_strategy(name: str = "default"):
    """The ``tf.distribute`` strategy ``train.strategy`` names, created once per process.

    - ``default``: TensorFlow's default (one device).
    - ``mirrored``: ``MirroredStrategy``, synchronous data parallelism over all GPUs of this machine
      (one replica on a CPU-only machine).
    - ``multi_worker``: ``MultiWorkerMirroredStrategy`` across the machines that the ``TF_CONFIG``
      environment variable lists (every worker runs the same command with its own ``task``; without
      ``TF_CONFIG`` it trains alone). It must be created before any other TensorFlow op, so a program
      calls this first. Only the chief (:func:`is_chief`) writes outputs and logs to MLflow.

    ``train.batch_size`` is the global batch, split evenly over the replicas.
    """
    if name not in STRATEGIES:
        raise ValueError(f"train.strategy must be one of {STRATEGIES}, got {name!r}")
    if name in _STRATEGIES:
        return _STRATEGIES[name]
    import tensorflow as tf

    if name == "default":
        strategy = tf.distribute.get_strategy()
    elif name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    else:
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except (RuntimeError, ValueError) as error:
            raise RuntimeError(
                f"MultiWorkerMirroredStrategy could not be created ({error}). It must be created before any "
                f"other TensorFlow op: call mobiledx.training.distribution_strategy('multi_worker') first "
                f"thing in the program, and check TF_CONFIG."
            ) from error
        _patch_keras_multi_worker_reduce()
    _STRATEGIES[name] = strategy
    return strategy


def _tf_config() -> dict:
    text = os.environ.get("TF_CONFIG", "").strip()
    return json.loads(text) if text else {}


def task_name(strategy: str) -> str:
    """``chief`` for the process that owns outputs, else ``worker-<index>`` (``multi_worker`` only)."""
    if strategy != "multi_worker":
        return "chief"
    config = _tf_config()
    task = config.get("task") or {}
    kind, index = task.get("type"), int(task.get("index", 0))
    worker_zero = kind == "worker" and index == 0 and "chief" not in config.get("cluster", {})
    if kind is None or kind == "chief" or worker_zero:
        return "chief"
    return f"{kind}-{index}"


def is_chief(strategy: str) -> bool:
    """Whether this process writes the outputs and logs to MLflow: always, except for the non-chief
    workers of a ``multi_worker`` cluster (``TF_CONFIG``: task type ``chief``, or worker 0 when the
    cluster has no ``chief`` job)."""
    return task_name(strategy) == "chief"


def cluster_workers(strategy: str) -> int:
    """How many processes train together (1 unless ``multi_worker`` with a ``TF_CONFIG`` cluster)."""
    if strategy != "multi_worker":
        return 1
    cluster = _tf_config().get("cluster", {})
    return max(1, sum(len(cluster.get(job, [])) for job in ("chief", "worker")))


def save_worker_copy(model) -> None:
    """What a non-chief worker does instead of writing outputs (the Keras multi-worker pattern): save
    to a temporary folder, which is deleted, so that any collective op in saving runs on every worker."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="mobiledx-worker-"))
    try:
        model.save(folder / "model.keras")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _patch_symbolic_build(model) -> None:
    """Work around Keras 3 + ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585,
    tensorflow/tensorflow#72388): ``fit()`` builds the model symbolically from the first batch and
    averages that (nested) batch with ``strategy.reduce``, which fails across workers ("Attempt to
    convert a value (PerReplica...)"). The batch only provides shapes: this model takes the local one."""
    import types

    import tensorflow as tf
    from keras import tree

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tree.map_structure(
                    lambda value: self.distribute_strategy.experimental_local_results(value)[0]
                    if isinstance(value, tf.distribute.DistributedValues) else value,
                    next(batches),
                )
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = types.MethodType(_maybe_symbolic_build, model)


def _patch_keras_multi_worker_reduce() -> None:
    """Work around Keras 3 averaging each step's scalar loss and metrics across workers with
    ``strategy.reduce("MEAN", value, axis=0)``, invalid for scalars ("Invalid reduction dimension 0
    for input with 0 dimensions"): reduce them with ``axis=None`` (the mean over replicas)."""
    from keras import tree
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer.reduce_per_replica, "_mobiledx_patch", False):
        return
    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica._mobiledx_patch = True
    trainer.reduce_per_replica = reduce_per_replica


# --- crash-safe training backups -----------------------------------------------------------------

BACKUP_FOLDER = Path(".dvc") / "tmp" / "train-backup"


# The package code that shapes a training (the train stage's code deps in dvc.yaml, less tracking and plots).
TRAINING_CODE = ("training.py", "models", "augmentation.py", "schedules.py", "metadata.py", "rebalance.py",
                 "data/cache.py")


def training_key(params: dict[str, Any], inputs: Iterable[str | os.PathLike], code: Iterable[str | os.PathLike] = (),
                 workers: int = 1) -> str:
    """A hash of everything that determines a training: the ``lr``, ``seed`` and ``train`` params,
    the SHA-256 of every input file, the source of :data:`TRAINING_CODE` and of the ``code`` files (e.g.
    the stage script), the Keras version and the number of workers. Two trainings share a backup
    only if their keys are equal."""
    from importlib import metadata

    from mobiledx.io import sha256_file

    package = Path(__file__).resolve().parent
    sources = []
    for path in [package / name for name in TRAINING_CODE] + [Path(p) for p in code]:
        sources += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    description = {
        "params": {"lr": params["lr"], "seed": params["seed"], "train": params["train"]},
        "inputs": {str(path): sha256_file(path) for path in inputs},
        "code": hashlib.md5(b"".join(path.read_bytes() for path in sources if path.exists())).hexdigest(),
        "keras": metadata.version("keras"),
        "workers": workers,
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()[:20]


class TrainingBackup:
    """The training state of one training, saved crash-safe after every epoch, in ``directory``.

    Each save writes ``weights-<n>.npz`` (all model weights, BatchNorm statistics included),
    ``optimizer-<n>.npz`` (Adam's moments, step count and learning rate), ``best-<n>.npz`` (early
    stopping's best weights, when they changed) and LAST ``state-<n>.json`` (epoch, phase, history,
    callback counters, which files belong to it), each to a temporary file renamed into place. A
    kill at any moment leaves the previous complete state readable. The two newest states are kept.
    ``run.json`` holds the MLflow run id of the training, so a resumed run logs into the same run.

    A lock (``flock``, released by the OS when the process dies) keeps two live processes from
    sharing one backup.
    """

    KEEP = 2

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = _try_lock(self.directory / "lock")
        if self._lock is None:
            raise BlockingIOError(f"{self.directory} is in use by another training")
        self.stale_run_ids: list[str] = []

    @classmethod
    def for_training(cls, dataset: str, key: str, task: str = "chief",
                     root: str | os.PathLike | None = None) -> "TrainingBackup | None":
        """The backup of training ``key`` for ``dataset`` under ``<repo>/.dvc/tmp/train-backup/``
        (``None`` outside a DVC repository, or when a live process of the same training holds it).

        Backups of OTHER keys for ``dataset`` that no live process holds are deleted (an interrupted
        training whose params or data have since changed); their MLflow run ids are kept in
        ``stale_run_ids`` so the caller can mark those runs as killed.
        """
        from mobiledx.tracking import repository_root

        repo = repository_root(root)
        if not (repo / ".dvc").is_dir():
            return None
        base = repo / BACKUP_FOLDER / dataset
        try:
            backup = cls(base / key / task)
        except BlockingIOError:
            print(f"mobiledx: another process is running this same training ({base / key}); this one "
                  f"runs without a backup", flush=True)
            return None
        backup.stale_run_ids = _remove_stale_backups(base, keep=key)
        return backup

    # MLflow run id -------------------------------------------------------------------------------
    @property
    def run_id(self) -> str | None:
        return _read_run_id(self.directory)

    def set_run_id(self, run_id: str) -> None:
        from mobiledx.io import write_json

        write_json(self.directory / "run.json", {"run_id": run_id})

    # states --------------------------------------------------------------------------------------
    def _numbers(self) -> list[int]:
        numbers = []
        for path in self.directory.glob("state-*.json"):
            try:
                numbers.append(int(path.stem.split("-", 1)[1]))
            except ValueError:
                continue
        return sorted(numbers)

    def load(self, number: int) -> dict | None:
        """State ``number``, or None if it or a file it names is missing or unreadable."""
        try:
            state = json.loads((self.directory / f"state-{number:06d}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        files = [state.get("weights"), state.get("optimizer"), state.get("best_weights")]
        if not all((self.directory / name).is_file() for name in files if name):
            return None
        return state

    def available(self) -> list[int]:
        """Numbers of the complete states, oldest first."""
        return [number for number in self._numbers() if self.load(number) is not None]

    def latest(self) -> dict | None:
        numbers = self.available()
        return self.load(numbers[-1]) if numbers else None

    def save(self, state: dict, weights: list, optimizer: list | None = None, best_weights: list | None = None) -> int:
        """Write a new state (see the class docstring); returns its number."""
        from mobiledx.io import write_json

        numbers = self._numbers()
        number = numbers[-1] + 1 if numbers else 1
        previous = self.load(numbers[-1]) if numbers else None
        state = dict(state, number=number, weight_shapes=[list(np.shape(w)) for w in weights])
        state["weights"] = self._write_arrays(f"weights-{number:06d}.npz", weights)
        state["optimizer"] = self._write_arrays(f"optimizer-{number:06d}.npz", optimizer) if optimizer else None
        if best_weights is not None:
            state["best_weights"] = self._write_arrays(f"best-{number:06d}.npz", best_weights)
        else:  # unchanged: the previous state's file (within the same phase)
            same_phase = previous and previous.get("phase") == state.get("phase") and not previous.get("finished")
            state.setdefault("best_weights", previous.get("best_weights") if same_phase else None)
        write_json(self.directory / f"state-{number:06d}.json", state)
        self._prune()
        return number

    def _write_arrays(self, name: str, arrays: list) -> str:
        from mobiledx.io import atomic_path

        with atomic_path(self.directory / name) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, *[np.asarray(a) for a in arrays])
        return name

    def read_arrays(self, name: str) -> list[np.ndarray]:
        with np.load(self.directory / name, allow_pickle=False) as data:
            return [data[f"arr_{i}"] for i in range(len(data.files))]

    def _prune(self) -> None:
        keep = self._numbers()[-self.KEEP:]
        wanted = {"lock", "run.json"}
        for number in keep:
            state = self.load(number)
            if state is not None:
                wanted.add(f"state-{number:06d}.json")
                wanted.update(name for name in (state.get("weights"), state.get("optimizer"),
                                                state.get("best_weights")) if name)
        for path in self.directory.iterdir():
            if path.name not in wanted and path.is_file():
                path.unlink(missing_ok=True)

    def restore(self, model, state: dict, strategy, optimizer: bool) -> None:
        """Put ``state``'s weights (and, with ``optimizer``, the optimizer's variables) into ``model``."""
        model.set_weights(self.read_arrays(state["weights"]))
        if not (optimizer and state.get("optimizer")):
            return
        values = self.read_arrays(state["optimizer"])
        with strategy.scope():
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            variables = model.optimizer.variables
            if [tuple(v.shape) for v in variables] != [value.shape for value in values]:
                print("mobiledx: the backed-up optimizer state does not fit this optimizer; continuing with a "
                      "fresh optimizer state", flush=True)
                return
            for variable, value in zip(variables, values):
                variable.assign(value)

    def remove(self) -> None:
        """Delete the backup (after the stage's outputs are safely written) and release the lock."""
        shutil.rmtree(self.directory, ignore_errors=True)
        key_folder = self.directory.parent
        if key_folder.is_dir() and not any(key_folder.iterdir()):
            key_folder.rmdir()
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def _read_run_id(folder: Path) -> str | None:
    try:
        return json.loads((folder / "run.json").read_text(encoding="utf-8"))["run_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _try_lock(path: Path) -> int | None:
    """An exclusive, non-blocking ``flock`` on ``path`` (its file descriptor), or None if held elsewhere."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _remove_stale_backups(base: Path, keep: str) -> list[str]:
    """Delete the backups under ``base`` other than ``keep`` that no live process holds; their run ids."""
    run_ids = []
    for folder in base.iterdir() if base.is_dir() else []:
        if folder.name == keep or not folder.is_dir():
            continue
        locks = []
        try:
            for task in folder.iterdir():
                lock = _try_lock(task / "lock") if task.is_dir() else -1
                if lock is None:
                    break  # a live training holds it
                locks.append(lock)
            else:
                run_id = _read_run_id(folder / "chief")
                if run_id:
                    run_ids.append(run_id)
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            for lock in locks:
                if lock >= 0:
                    os.close(lock)
    return run_ids


def _resume_state(backup: TrainingBackup | None, strategy, workers: int, model) -> dict | None:
    """The state to resume from: the newest complete one (every worker of a ``multi_worker`` cluster
    must resume from the same one: they agree on the newest state all of them hold, or start afresh)."""
    numbers = backup.available() if backup else []
    if workers > 1:
        numbers = _common_state_numbers(strategy, numbers[-TrainingBackup.KEEP:])
    state = backup.load(numbers[-1]) if numbers else None
    if state and state.get("weight_shapes") != [list(w.shape) for w in model.weights]:
        print(f"mobiledx: the backup in {backup.directory} does not fit this model; training from the start",
              flush=True)
        state = None
    if state is None and backup is not None and backup.available():
        for number in backup.available():
            (backup.directory / f"state-{number:06d}.json").unlink(missing_ok=True)
        backup._prune()
    return state


def _common_state_numbers(strategy, numbers: list[int]) -> list[int]:
    """The state numbers every worker holds (a collective op: every worker must call it)."""
    import tensorflow as tf

    local = np.full(TrainingBackup.KEEP, -1, np.int64)
    local[: len(numbers)] = numbers[-TrainingBackup.KEEP:]
    values = strategy.experimental_distribute_values_from_function(lambda _: tf.constant(local))
    gathered = np.asarray(strategy.gather(values, axis=0)).reshape(-1, TrainingBackup.KEEP)
    common = set.intersection(*(set(int(n) for n in row if n >= 0) for row in gathered))
    return sorted(common)


def _batchnorm_layers(layer) -> list:
    import keras

    found = [layer] if isinstance(layer, keras.layers.BatchNormalization) else []
    for child in getattr(layer, "layers", []):
        found.extend(_batchnorm_layers(child))
    return found


def calibration_batches(images, train_rows: np.ndarray, train_metadata: np.ndarray | None, count: int,
                        batch_size: int, seed: int) -> Callable[[], Iterator]:
    """The BatchNorm calibration sample: ``count`` training images drawn once (seeded), read from
    ``images`` in batches of at most ``batch_size`` each time the returned function is called.
    Batches are float32 pixels, or ``{"image", "metadata"}`` for metadata models."""
    chosen = np.sort(np.random.default_rng(seed).permutation(len(train_rows))[:count])

    def batches() -> Iterator:
        for start in range(0, len(chosen), batch_size):
            positions = chosen[start:start + batch_size]
            pixels = np.asarray(images[train_rows[positions]], dtype=np.float32)
            yield pixels if train_metadata is None else {"image": pixels, "metadata": train_metadata[positions]}

    return batches


def recalibrate_batchnorm(model, batches: Iterable) -> None:
    """Set every BatchNorm layer's moving statistics to the mean and variance of its inputs over
    ALL ``batches`` (pixels, or ``{"image", "metadata"}`` dicts) at the current weights.

    Moving averages lag behind weights that change fast, as in a short from-scratch training, and
    inference-mode outputs then collapse towards one class. Here the model runs once per batch in
    training mode (momentum 0, so each layer's moving statistics become that batch's), and the
    batch statistics are pooled exactly: mean = Σ nᵢ·meanᵢ / N, variance = Σ nᵢ·(varᵢ + (meanᵢ − mean)²) / N.
    Memory is that of one batch, whatever the sample size. A layer whose input passes no
    earlier BatchNorm gets exactly the statistics of one pass over the whole sample; deeper layers
    see their inputs normalised per batch, as in training ("precise BatchNorm"). The model's random
    generators (dropout) are left as they were.
    """
    layers = _batchnorm_layers(model)
    if not layers:
        return
    momenta = [layer.momentum for layer in layers]
    # Training-mode passes draw random numbers (dropout): put the generators back afterwards, so that
    # calibrating (or not, or on more images) never changes the training that follows.
    generators = _rng_variables(model)
    generator_states = [np.asarray(variable) for variable in generators]
    sizes: list[int] = []
    statistics: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in layers]  # per layer: (mean, var) per batch
    try:
        for layer in layers:
            layer.momentum = 0.0
        for batch in batches:
            sizes.append(len(batch["image"]) if isinstance(batch, dict) else len(batch))
            model(batch, training=True)
            for layer, found in zip(layers, statistics):
                found.append((np.asarray(layer.moving_mean, np.float64), np.asarray(layer.moving_variance, np.float64)))
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        for variable, state in zip(generators, generator_states):
            variable.assign(state)
    if not sizes:
        return
    weights = np.asarray(sizes, np.float64)[:, None] / sum(sizes)
    for layer, found in zip(layers, statistics):
        means = np.stack([mean for mean, _ in found])
        variances = np.stack([variance for _, variance in found])
        mean = (weights * means).sum(axis=0)
        # Total variance = mean within-batch variance + variance of the batch means (exact, no cancellation).
        variance = (weights * (variances + (means - mean) ** 2)).sum(axis=0)
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(variance.astype(np.float32))


def BatchNormCalibration(batches: Callable[[], Iterable]):
    """Keras callback: recalibrate BatchNorm statistics before every validation pass.

    Validation metrics (and so early stopping and the restored best weights) then reflect the
    model as it will run in inference mode. ``batches()`` yields the calibration sample batch by
    batch (see :func:`calibration_batches`); an empty sample does nothing.
    """
    import keras

    class _Calibration(keras.callbacks.Callback):
        def on_test_begin(self, logs=None) -> None:
            recalibrate_batchnorm(self.model, batches())

    return _Calibration()


def best_epoch(history: pd.DataFrame, monitor: str) -> pd.Series:
    """The history row early stopping restored: lowest ``monitor`` for losses, highest otherwise."""
    values = history[monitor]
    return history.loc[values.idxmin() if "loss" in monitor else values.idxmax()]


def predict_probabilities(
    model, images, rows: np.ndarray, batch_size: int, metadata: np.ndarray | None = None
) -> np.ndarray:
    """Inference-mode class probabilities for ``images[rows]`` (and their encoded ``metadata``), read
    and predicted ``batch_size`` images at a time (``images``: an array or a mapped image cache)."""
    data = make_dataset(images, rows, np.zeros((len(rows), 1), np.float32), None, batch_size, metadata=metadata)
    return model.predict(data.map(lambda x, _: x), verbose=0)

"""``params.yaml`` as one typed model: a frozen dataclass per section, one loader, one set of defaults.

Every stage reads its settings from :class:`Params`; nothing else parses ``params.yaml``. Each
section's defaults are the demo's values (``params.yaml`` lists them all, so that DVC tracks every
key; ``tests/unit/test_params.py`` checks the two agree). An unknown key, a value of the wrong
type or an impossible setting is a :class:`ParamsError` naming the key and the fix.

A dataset entry may carry its own recipe: sections ``ingest``, ``validate``, ``split``, ``rebalance``,
``train``, ``evaluate`` and ``export`` under ``datasets.<name>`` override the shared ones for that dataset
only (:meth:`Params.for_dataset`). ``seed`` and ``lr`` stay shared: ``dvc exp run -S lr=...``
changes every dataset.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobiledx.errors import MobiledxError

PARAMS_FILE = "params.yaml"
UNKNOWN_LICENSE = "not stated (set datasets.<name>.license in params.yaml)"
SPLIT_METHODS = ("fractions", "per_class", "source", "kfold")
GROUPINGS = ("auto", "patient", "lesion", "image")
UNFIT_POLICIES = ("quarantine", "keep")
MISSING_FILES_POLICIES = ("refuse", "allow")  # validate.missing_files
REBALANCE_METHODS = ("none", "class_weight", "oversample", "undersample", "augment")


class ParamsError(MobiledxError):
    """``params.yaml`` has an unknown key, a value of the wrong type, or an impossible setting."""


class UndeclaredParamError(MobiledxError):
    """A stage read a params key that its ``params:`` in dvc.yaml does not list (DVC would not re-run it)."""


class _Declarable:
    """A params section that can be narrowed to the keys one stage declares (:meth:`Params.declared`).

    Reading a key the stage did not declare raises :class:`UndeclaredParamError`: DVC re-runs a stage
    only when a declared key changes, so an undeclared read would leave stale outputs behind.
    """

    def __getattribute__(self, key: str) -> Any:
        narrowed = object.__getattribute__(self, "__dict__").get("_declared")
        if narrowed is not None and key in narrowed[2]:
            stage, where, _ = narrowed
            name = f"{where}.{key}" if where else key
            raise UndeclaredParamError(
                f"stage {stage} reads params.yaml key {name}, which dvc.yaml does not declare for it. Fix: add "
                f"`- {name}` under stages.{stage}.params in dvc.yaml (else DVC does not re-run {stage} when it changes)"
            )
        return object.__getattribute__(self, key)

    def _narrowed(self, stage: str, where: str, allowed: set[str]):
        copy = dataclasses.replace(self)
        hidden = frozenset(f.name for f in dataclasses.fields(self)) - allowed
        object.__setattr__(copy, "_declared", (stage, where, hidden))
        return copy


def _check(condition: bool, where: str, problem: str) -> None:
    if not condition:
        raise ParamsError(f"params.yaml: {where} {problem}")


@dataclass(frozen=True)
class DemoParams(_Declarable):
    """Synthetic demo data (stage make_demo).

    - ``skin_images``: Images of demo-skin (HAM10000 layout); at least 1/17 of them in every class (41 of 700).
    - ``blood_subjects``: Subjects of demo-blood (C-NMC 2019 layout): 48 blood subjects of 9 cells instead of 24 of 18
      give more independent subjects in the test split.
    - ``blood_cells_per_subject``: Cell images per demo-blood subject.
    """

    seed: int = 42  # the demo data's own seed: `-S seed=...` repeats a training on the same data
    skin_images: int = 700
    blood_subjects: int = 48
    blood_cells_per_subject: int = 9
    clinic_images: int = 200  # demo-clinic: another clinic's camera, ISIC Archive layout (external validation)
    clinic_shared_images: int = 30  # demo-skin images it re-ships under their own ISIC ids


@dataclass(frozen=True)
class IngestParams(_Declarable):
    image_size: int = 96  # pixels per side of the cached, model-ready images
    workers: int = 0  # decode processes; 0 = all cores
    min_image_side: int = 16  # an original image with a smaller side is unfit for the model
    max_aspect_ratio: float = 4.0  # ... and so is one whose long side exceeds this many times the short one
    unfit_images: str = "quarantine"  # quarantine | keep (kept, counted in the validation report)
    near_duplicates: str = "group"  # group | quarantine | report: near-duplicate images under different groups
    near_duplicate_distance: int = 16  # largest summed Hamming distance of their perceptual hashes (0-191)

    def __post_init__(self) -> None:
        _check(self.near_duplicates in NEAR_DUPLICATE_POLICIES, "ingest.near_duplicates",
               f"must be one of {NEAR_DUPLICATE_POLICIES}, got {self.near_duplicates!r}")
        _check(0 <= self.near_duplicate_distance <= 191, "ingest.near_duplicate_distance",
               f"must be between 0 and 191, got {self.near_duplicate_distance}")
        _check(self.image_size >= 8, "ingest.image_size", f"must be at least 8 pixels, got {self.image_size}")
        _check(self.workers >= 0, "ingest.workers", f"must be 0 (all cores) or more, got {self.workers}")
        _check(self.max_aspect_ratio >= 1, "ingest.max_aspect_ratio",
               f"must be at least 1, got {self.max_aspect_ratio}")
        _check(self.unfit_images in UNFIT_POLICIES, "ingest.unfit_images",
               f"must be one of {UNFIT_POLICIES}, got {self.unfit_images!r}")


@dataclass(frozen=True)
class ValidateParams(_Declarable):
    """``missing_files``: images the metadata lists but no file holds (a partial download). ``refuse``
    counts them as quarantined, toward ``max_quarantined_fraction``; ``allow`` trains deliberately on the
    images present: they are counted apart (the fraction is of the refused inputs only), and the report
    and model card say that the model saw a subset.

    - ``min_images_per_class``: `validate` fails if any class has fewer images.
    - ``max_quarantined_fraction``: `validate` fails if more than this fraction of the inputs were quarantined (refused
      only, with `missing_files: allow`).
    """

    min_images_per_class: int = 10
    max_quarantined_fraction: float = 0.05
    missing_files: str = "refuse"  # refuse | allow

    def __post_init__(self) -> None:
        _check(self.missing_files in MISSING_FILES_POLICIES, "validate.missing_files",
               f"must be one of {MISSING_FILES_POLICIES}, got {self.missing_files!r}")


@dataclass(frozen=True)
class SplitParams(_Declarable):
    """``val_fraction`` (and ``test_fraction``) are fractions of the whole dataset.

    - ``fractions``: a stratified, grouped test hold-out of ``test_fraction``.
    - ``per_class``: whole groups per class until ``test_per_class`` test images each (paper 000: 10).
    - ``source``: the distributor's own test split (``source_split == "test"``), and its val split if any.
    - ``kfold``: fold ``fold`` of ``folds`` stratified, grouped folds is the test split (paper 002: 3).
    In every method the validation split is then held out of the rest, stratified and grouped.

    - ``method``: How the test split is chosen (each method is described above); every method keeps lesions/subjects
      whole and stratifies by label.
    - ``test_fraction``: Method `fractions`: the share of the whole dataset held out as the test split.
    - ``val_fraction``: The validation split, as a fraction of the whole dataset, in every method.
    - ``test_per_class``: Method `per_class`: test images per class, taken as whole lesions (paper 000: 10).
    - ``folds``: Method `kfold`: the number of stratified, grouped folds (paper 002: 3).
    - ``fold``: Method `kfold`: the fold that is the test split, `0` … `folds − 1` (`dvc exp run -S split.fold=1`).
    """

    method: str = "fractions"
    test_fraction: float = 0.2
    val_fraction: float = 0.15
    test_per_class: int = 10
    folds: int = 3
    fold: int = 0

    def __post_init__(self) -> None:
        _check(self.method in SPLIT_METHODS, "split.method", f"must be one of {SPLIT_METHODS}, got {self.method!r}")
        _check(0 < self.test_fraction < 1 and 0 < self.val_fraction < 1 and self.test_fraction + self.val_fraction < 1,
               "split.test_fraction/val_fraction",
               f"must each be in (0, 1) and sum to less than 1, got test={self.test_fraction} val={self.val_fraction}")
        _check(self.method != "kfold" or (self.folds >= 2 and 0 <= self.fold < self.folds), "split.fold",
               f"must be in 0..{self.folds - 1} with split.folds >= 2, got fold={self.fold}")


@dataclass(frozen=True)
class RebalanceParams(_Declarable):
    """The ``rebalance`` section: what the training split becomes before training (validation and test untouched).

    - ``method``: `class_weight`: paper 004's "balanced" weights, `N/(C·N_c)` on the training split only; `oversample` /
      `undersample`: imbalanced-learn re-sampling; `augment`: offline-augmented images up to `target_per_class` per
      class; `none`.
    """

    method: str = "class_weight"
    train_fraction: float = 1.0  # share of training groups kept per class (paper 000's half-data study)
    target_per_class: int = 0  # method augment: grow every class to this many images
    augmentation: str = "paper004"  # method augment: the preset that makes the new images

    def __post_init__(self) -> None:
        _check(self.method in REBALANCE_METHODS, "rebalance.method",
               f"must be one of {REBALANCE_METHODS}, got {self.method!r}")
        _check(
            0 < self.train_fraction <= 1, "rebalance.train_fraction", f"must be in (0, 1], got {self.train_fraction}"
        )
        _check(
            self.method != "augment" or self.target_per_class > 0,
            "rebalance.target_per_class",
            "must be > 0 with rebalance.method=augment",
        )
        _check(self.augmentation in AUGMENTATION_PRESETS, "rebalance.augmentation",
               f"must be one of {AUGMENTATION_PRESETS}, got {self.augmentation!r}")


@dataclass(frozen=True)
class TrainParams(_Declarable):
    """The ``train`` section: the model, its training recipe and the distribution strategy.

    - ``backbone``: The image model; each backbone's own input preprocessing is a layer inside the graph
      ([Models](../guides/models.md)).
    - ``alpha``: MobileNet width; 1.0 for real data.
    - ``weights``: `none` (from scratch), `imagenet` (downloaded on first use to `~/.keras/models/`;
      [offline](../guides/models.md#imagenet-weights-offline)), or the path to a no-top weights file.
    - ``head``: `dense`, the paper-000 head (GAP → Dense 512 ReLU → Dropout 0.2 → softmax); `sigmoid`, one sigmoid unit
      for binary tasks (paper 002), output as `[1 − p, p]`; `soft_attention`, the Soft-Attention module of paper 004.
    - ``dense_units``: Units of the head's hidden Dense layer (0 = none; set 0 for paper 003's CNN and MLP).
    - ``dropout``: Dropout rate of the head.
    - ``attention_heads``: Head `soft_attention`: the number of attention maps (3×3 Conv2D to 16 maps).
    - ``metadata``: Adds the patient-metadata branch (paper 004): age (normalised on the training split, with a
      missing-age flag), sex and site (one-hot) go through a Dense layer and are concatenated with the image features;
      the `.tflite` then has a second input, `metadata`.
    - ``metadata_units``: Dense units of the metadata branch (paper 004: 4096).
    - ``epochs``: The most epochs a training runs (early stopping may end it sooner); 50 for real data.
    - ``batch_size``: The training batch (prediction runs at it too): the global batch, divided evenly over the
      replicas, with a distribution strategy.
    - ``augmentation``: Online augmentation inside `tf.data`, as Keras layers, one fused affine transform per batch:
      `paper000` (rotation 40°, zoom 0.2, shifts 0.2, shear 0.2°, horizontal flip), `paper004` (rotation 180°, shifts
      0.1, zoom 0.1, both flips), `paper002` (central-crop zoom with p = 0.7), `mobiledx` or `none`.
    - ``loss``: Cross-entropy or focal loss; class weighting is the rebalance stage's `class_weight` method.
    - ``focal_gamma``: γ of the focal loss.
    - ``adam_epsilon``: Adam's epsilon (paper 004: 0.1).
    - ``schedule``: `constant`, `plateau` (ReduceLROnPlateau ×0.2 down to 1e-7; paper 004) or `cosine_restarts` (SGDR;
      paper 002).
    - ``plateau_patience``: Schedule `plateau`: epochs without improvement of `monitor` before the learning rate drops.
    - ``restart_epochs``: Schedule `cosine_restarts`: length of the first cycle (each next one is twice as long).
    - ``freeze_epochs``: `N > 0` trains the head with the backbone frozen for N epochs, then fine-tunes it; e.g. 5 with
      ImageNet weights.
    - ``unfreeze_layers``: The top backbone layers fine-tuned after `freeze_epochs` (0 = all, BatchNorm kept frozen).
    - ``fine_tune_lr_factor``: Fine-tuning runs at `lr × fine_tune_lr_factor`.
    - ``patience``: Early stopping on `monitor`, with the best weights restored, after this many epochs without
      improvement (small validation splits are noisy: 5 stopped demo-blood at chance).
    - ``monitor``: What early stopping (and the plateau schedule) watch, e.g. `val_loss`; paper 004: `val_accuracy`.
    - ``bn_momentum``: BatchNorm momentum (Keras' default 0.999 lags badly in from-scratch training; 0.99 with ImageNet
      weights; `null` keeps the backbone's own).
    - ``bn_calibration_images``: Before every validation pass, re-estimate the BatchNorm statistics on this many
      training images at the current weights, so inference mode matches training (0 = off; 0 with ImageNet weights).
    - ``strategy``: `tf.distribute`: `default` (one device), `mirrored` (every GPU of this machine), `multi_worker` (the
      machines in `TF_CONFIG`; [distributed training](../guides/real-size.md#distributed-training)).
    """

    backbone: str = "mobilenetv2"
    alpha: float = 0.35
    weights: str = "none"
    head: str = "dense"
    dense_units: int = 512
    dropout: float = 0.2
    attention_heads: int = 16
    metadata: bool = False
    metadata_units: int = 64
    epochs: int = 40
    batch_size: int = 32
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
    patience: int = 10
    monitor: str = "val_loss"
    bn_momentum: float | None = 0.9
    bn_calibration_images: int = 256
    strategy: str = "default"

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "train.epochs", f"must be at least 1, got {self.epochs}")
        _check(self.batch_size >= 1, "train.batch_size", f"must be at least 1, got {self.batch_size}")
        _check(self.bn_calibration_images >= 0, "train.bn_calibration_images", "must be 0 (off) or more")
        for key, choices in (("backbone", BACKBONE_NAMES), ("head", HEADS), ("augmentation", AUGMENTATION_PRESETS),
                             ("loss", LOSSES), ("schedule", SCHEDULES), ("strategy", STRATEGIES)):
            value = getattr(self, key)
            _check(value in choices, f"train.{key}", f"must be one of {choices}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig(TrainParams):
    """What a training needs: the ``train`` section plus the shared ``lr`` and ``seed``."""

    lr: float = 0.001
    seed: int = 42


# The choices of the train section: the wings that act on them (models, training, augmentation) import them
# from here, so an impossible setting is refused when params.yaml is read, before any stage works.
BACKBONE_NAMES = ("mobilenetv2", "mobilenet", "mobilenetv3small", "mobilenetv3large", "nasnetmobile", "vgg19",
                  "inceptionv3", "resnet50", "resnet101", "resnet152", "resnet50v2", "resnet101v2", "resnet152v2",
                  "inceptionresnetv2", "densenet201", "cnn15", "mlp")  # models.backbones.BACKBONES, in this order
HEADS = ("dense", "sigmoid", "soft_attention")
AUGMENTATION_PRESETS = ("none", "mobiledx", "paper000", "paper004", "paper002")
LOSSES = ("crossentropy", "focal")
SCHEDULES = ("constant", "plateau", "cosine_restarts")
STRATEGIES = ("default", "mirrored", "multi_worker")
OPERATING_TARGETS = ("sensitivity", "specificity")
NEAR_DUPLICATE_POLICIES = ("group", "quarantine", "report")
CALIBRATION_METHODS = ("temperature", "none")


@dataclass(frozen=True)
class EvaluateParams(_Declarable):
    """Metrics on the validation and test splits, and the clinical operating point.

    With ``operating_class`` set (e.g. ``mel``), the threshold on p(operating_class) that meets
    ``operating_target >= operating_value`` on the validation split is the model's operating point:
    the test split reports sensitivity, specificity, PPV and NPV there, and the threshold ships with
    the model (model card, release.json, .tflite metadata, ``mobiledx predict``). The error gallery
    (:mod:`mobiledx.evaluation.gallery`) shows ``gallery_errors`` false negatives and false positives and
    ``gallery_correct`` correct images per class, with saliency maps. ``calibration:
    temperature`` fits one temperature on the validation split (:mod:`mobiledx.evaluation.calibration`): every
    figure and the operating point are then on the calibrated scores the exported model returns.

    - ``operating_value``: The value `operating_target` must reach on the validation split at the chosen threshold (e.g.
      0.9).
    """

    bootstrap_samples: int = 1000  # seeded bootstrap for the 95 % CIs
    operating_class: str = ""  # the class of interest ("" = no operating point)
    operating_target: str = "sensitivity"  # sensitivity | specificity, met on the validation split
    operating_value: float = 0.9
    calibration: str = "temperature"  # temperature | none: fitted on validation, folded into the exported model
    gallery_errors: int = 3  # error gallery: per class, this many false negatives and as many false positives
    gallery_correct: int = 2  # ... and this many confidently correct test images

    def __post_init__(self) -> None:
        for name in ("gallery_errors", "gallery_correct"):
            _check(getattr(self, name) >= 0, f"evaluate.{name}", f"must be 0 or more, got {getattr(self, name)}")
        _check(self.operating_target in OPERATING_TARGETS, "evaluate.operating_target",
               f"must be one of {OPERATING_TARGETS}, got {self.operating_target!r}")
        _check(self.calibration in CALIBRATION_METHODS, "evaluate.calibration",
               f"must be one of {CALIBRATION_METHODS}, got {self.calibration!r}")
        _check(0 < self.operating_value <= 1, "evaluate.operating_value",
               f"must be in (0, 1], got {self.operating_value}")


@dataclass(frozen=True)
class ExportParams(_Declarable):
    representative_images: int = 500  # training images (seeded sample) that calibrate int8 quantization
    int8_range_percentile: float = 99.999  # int8 activation ranges keep this central % of calibration values
    int8_float_stride: int = 8  # int8 keeps in float the ops whose output has >= 1/this of the input resolution
    latency_runs: int = 50  # litert-benchmark runs per variant and thread count
    author: str = "mobiledx"  # author field of the .tflite metadata and the model card

    def __post_init__(self) -> None:
        _check(50 < self.int8_range_percentile <= 100, "export.int8_range_percentile",
               f"must be in (50, 100] (100 = the calibration min/max), got {self.int8_range_percentile}")
        _check(self.int8_float_stride >= 0, "export.int8_float_stride",
               f"must be 0 (only the input normalisation in float) or more, got {self.int8_float_stride}")


@dataclass(frozen=True)
class LabelPolicy:
    """How a source's raw diagnosis becomes a class (``datasets.<name>.labels``).

    - ``column``: the metadata column holding the diagnosis (the adapter's own when empty).
    - ``map``: raw value -> class; a key ``"<column>=<value>"`` matches another column first (e.g.
      ``"diagnosis_2=Benign soft tissue proliferations - Vascular": vasc``). Empty: raw values are classes.
    - ``unmapped`` / ``missing``: what a value outside ``map`` / an empty value becomes: ``quarantine``
      (refused, with its reason) or the name of a class.
    """

    column: str = ""
    map: dict[str, str] = field(default_factory=dict)
    unmapped: str = "quarantine"
    missing: str = "quarantine"


RECIPE_SECTIONS = {
    "ingest": IngestParams,
    "validate": ValidateParams,
    "split": SplitParams,
    "rebalance": RebalanceParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
    "export": ExportParams,
}


@dataclass(frozen=True)
class DatasetParams:
    """One dataset under ``datasets:``: ``<name>: {kind: <adapter>, path: <raw folder>, ...}``.

    ``synthetic: true`` marks artificial data such as the demo (the model card then says the model has
    no clinical meaning); ``license`` is the data's licence (model card, ``.tflite`` metadata);
    ``group_by`` says what splits keep together; ``labels`` how raw diagnoses become classes
    (:class:`LabelPolicy`); ``recipe`` holds this dataset's overrides of the shared sections (keys
    ``ingest``, ``validate``, ``split``, ``rebalance``, ``train``, ``evaluate``, ``export`` in the entry).

    - ``name``: The entry's key: the dataset's name (stages `ingest@<name>` … `export@<name>`, its MLflow runs and
      registered model).
    - ``kind``: The adapter that reads the layout ([Data sources](../sources/index.md)).
    - ``path``: The raw data folder, versioned with DVC (`dvc add`); mobiledx never modifies it.
    - ``synthetic``: `true` marks artificial data such as the demo: the model card then says the model has no clinical
      meaning.
    - ``license``: The data's licence: written into the model card and the `.tflite` metadata
      ([Licences](../sources/licences.md)).
    - ``recipe``: This dataset's own recipe: overrides of the shared sections' keys, for this dataset only ([One recipe
      per dataset](../tutorial/2-own-data.md#one-recipe-per-dataset)).
    """

    name: str
    kind: str
    path: Path
    synthetic: bool = False
    license: str = UNKNOWN_LICENSE
    group_by: str = "auto"  # auto (patient, else lesion, else image) | patient | lesion | image
    labels: LabelPolicy = LabelPolicy()
    recipe: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class ExternalParams:
    """One external validation under ``external:``: the model trained on dataset ``model`` evaluated on every
    image of dataset ``data`` (registered under ``datasets:`` or ``external_datasets:``), its classes mapped
    onto ``data``'s by ``labels`` (each of the model's classes -> one class of ``data``; their probabilities
    are summed).

    - ``name``: The entry's key: stage `external@<name>`, outputs under `data/external/<name>/`.
    - ``model``: A dataset under `datasets:`: its trained, calibrated model.
    - ``data``: Any registered dataset, under `datasets:` or `external_datasets:`.
    - ``labels``: Model class → data class: each of the model's classes maps to one class of `data`, and their
      probabilities are summed.
    """

    name: str
    model: str
    data: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Params(_Declarable):
    """The whole ``params.yaml``; :meth:`for_dataset` gives one dataset's effective settings.

    - ``seed``: Every stochastic step of the pipeline takes it: split, over-sampling, shuffling, augmentation, weight
      initialisation and the int8 calibration sample. Repeat a configuration with `-S seed=0,1,2,3,4` ([Seed
      spread](../tutorial/3-experiments.md#seed-spread)).
    - ``lr``: Adam's learning rate; 0.0001–0.001 for real data. A top-level key, shared by every dataset: `dvc exp run
      -S lr=0.0001` re-runs train, evaluate and export of each.
    """

    seed: int = 42
    lr: float = 0.001
    datasets: dict[str, DatasetParams] = field(default_factory=dict)
    external_datasets: dict[str, DatasetParams] = field(default_factory=dict)  # ingested only, to validate on
    external: dict[str, ExternalParams] = field(default_factory=dict)
    demo: DemoParams = DemoParams()
    ingest: IngestParams = IngestParams()
    validate: ValidateParams = ValidateParams()
    split: SplitParams = SplitParams()
    rebalance: RebalanceParams = RebalanceParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    export: ExportParams = ExportParams()

    def dataset(self, name: str) -> DatasetParams:
        """The entry of ``name`` under ``datasets:`` (or ``external_datasets:``), with a clear error when it is
        not registered. A stage sees only the collection it declares (``datasets.${key}`` or
        ``external_datasets.${key}``)."""
        known: list[str] = []
        for collection in ("datasets", "external_datasets"):
            try:
                entries = getattr(self, collection)
            except UndeclaredParamError:
                continue
            if name in entries:
                return entries[name]
            known += sorted(entries)
        raise ParamsError(
            f"dataset {name!r} is not registered under 'datasets:' in params.yaml (registered: "
            f"{', '.join(known) or 'none'}). Fix: add `{name}: {{kind: <adapter>, path: <raw folder>}}` there"
        )

    def for_dataset(self, name: str) -> Params:
        """These params with dataset ``name``'s own recipe applied to the shared sections."""
        entry = self.dataset(name)
        return dataclasses.replace(
            self,
            **{
                section: _replace(getattr(self, section), values, f"datasets.{name}.{section}")
                for section, values in entry.recipe.items()
            },
        )

    def declared(self, keys: list[str], stage: str) -> Params:
        """These params as stage ``stage`` may read them: only ``keys``, its ``params:`` entries in dvc.yaml
        (``seed``, ``train``, ``ingest.image_size``, ``datasets.${key}`` ...); reading another key raises."""
        sections: dict[str, set[str] | None] = {}  # top-level key -> declared fields (None: all of it)
        for key in keys:
            top, _, rest = key.partition(".")
            if not rest or top in ("datasets", "external_datasets", "external"):
                sections[top] = None
            elif sections.get(top, set()) is not None:
                sections.setdefault(top, set()).add(rest)
        narrowed = {name: getattr(self, name)._narrowed(stage, name, fields)
                    for name, fields in sections.items() if fields is not None}
        return dataclasses.replace(self, **narrowed)._narrowed(stage, "", set(sections))

    def train_config(self) -> TrainConfig:
        return TrainConfig(**dataclasses.asdict(self.train), lr=self.lr, seed=self.seed)


def load_params(path: str | os.PathLike = PARAMS_FILE) -> Params:
    """Read and check ``params.yaml`` (see the module docstring)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path} not found. Fix: run the stage from the repository root, or pass --params") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return parse_params(raw)


def parse_params(raw: dict[str, Any]) -> Params:
    """A :class:`Params` from the mapping ``params.yaml`` holds."""
    collections = ("datasets", "external_datasets", "external")
    sections = {name: hint for name, hint in typing.get_type_hints(Params).items() if name not in collections}
    _unknown(raw, set(sections) | set(collections), "")
    values: dict[str, Any] = {}
    for name, hint in sections.items():
        if name not in raw:
            continue
        if dataclasses.is_dataclass(hint):
            values[name] = _section(hint, raw[name], name)
        else:
            values[name] = _value(raw[name], hint, name)
    datasets = raw.get("datasets") or {}
    _check(isinstance(datasets, dict), "datasets", "must map dataset names to {kind, path}")
    values["datasets"] = {str(name): _dataset(str(name), entry) for name, entry in datasets.items()}
    external_datasets = raw.get("external_datasets") or {}
    _check(isinstance(external_datasets, dict), "external_datasets", "must map dataset names to {kind, path}")
    values["external_datasets"] = {str(name): _dataset(str(name), entry, "external_datasets")
                                   for name, entry in external_datasets.items()}
    both = sorted(set(values["datasets"]) & set(values["external_datasets"]))
    _check(not both, "external_datasets", f"names {both} are also under datasets: one name, one dataset")
    external = raw.get("external") or {}
    _check(isinstance(external, dict), "external", "must map names to {model, data, labels}")
    values["external"] = {str(name): _external(str(name), entry, values) for name, entry in external.items()}
    params = Params(**values)
    for name in params.datasets:
        params.for_dataset(name)  # every recipe is checked now, not when its stage runs
    return params


def _external(name: str, entry: Any, values: dict) -> ExternalParams:
    where = f"external.{name}"
    _check(isinstance(entry, dict) and {"model", "data", "labels"} <= set(entry), where,
           f"must be a mapping with 'model', 'data' and 'labels', got {entry!r}")
    _unknown(entry, {"model", "data", "labels"}, where)
    model, data = _value(entry["model"], str, f"{where}.model"), _value(entry["data"], str, f"{where}.data")
    _check(model in values["datasets"], f"{where}.model",
           f"must name a dataset under datasets: (one that trains a model), got {model!r}. Fix: register it, or "
           f"remove external.{name} (the demo's external entries go with the demo datasets)")
    _check(data in values["datasets"] or data in values["external_datasets"], f"{where}.data",
           f"must name a dataset under datasets: or external_datasets:, got {data!r}. Fix: register it, or "
           f"remove external.{name}")
    labels = entry["labels"]
    _check(isinstance(labels, dict) and labels and all(isinstance(v, str) and v for v in labels.values()),
           f"{where}.labels", "must map each of the model's classes to a class of the data")
    return ExternalParams(name=name, model=model, data=data, labels={str(k): v for k, v in labels.items()})


def _dataset(name: str, entry: Any, collection: str = "datasets") -> DatasetParams:
    where = f"{collection}.{name}"
    _check(
        isinstance(entry, dict) and {"kind", "path"} <= set(entry),
        where,
        f"must be a mapping with 'kind' and 'path', got {entry!r}",
    )
    plain = {"kind", "path", "synthetic", "license", "group_by", "labels"}
    _unknown(entry, plain | set(RECIPE_SECTIONS), where)
    group_by = _value(entry.get("group_by", "auto"), str, f"{where}.group_by")
    _check(group_by in GROUPINGS, f"{where}.group_by", f"must be one of {GROUPINGS}, got {group_by!r}")
    labels = entry.get("labels") or {}
    _check(isinstance(labels, dict), f"{where}.labels", "must be a mapping (column, map, unmapped, missing)")
    _unknown(labels, {"column", "map", "unmapped", "missing"}, f"{where}.labels")
    mapping = labels.get("map") or {}
    _check(isinstance(mapping, dict) and all(isinstance(v, str) for v in mapping.values()), f"{where}.labels.map",
           "must map raw values to class names")
    recipe = {}
    for section in RECIPE_SECTIONS:
        if section in entry:
            overrides = entry[section]
            _check(isinstance(overrides, dict), f"{where}.{section}", "must be a mapping of keys to override")
            recipe[section] = dict(overrides)
    return DatasetParams(
        name=name,
        kind=_value(entry["kind"], str, f"{where}.kind"),
        path=Path(_value(entry["path"], str, f"{where}.path")),
        synthetic=_value(entry.get("synthetic", False), bool, f"{where}.synthetic"),
        license=_value(entry.get("license", UNKNOWN_LICENSE), str, f"{where}.license"),
        group_by=group_by,
        labels=LabelPolicy(
            column=_value(labels.get("column", ""), str, f"{where}.labels.column"),
            map={str(key): value for key, value in mapping.items()},
            unmapped=_value(labels.get("unmapped", "quarantine"), str, f"{where}.labels.unmapped"),
            missing=_value(labels.get("missing", "quarantine"), str, f"{where}.labels.missing"),
        ),
        recipe=recipe,
    )


def _section(cls, raw: Any, where: str):
    _check(isinstance(raw, dict), where, f"must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    _unknown(raw, fields, where)
    return cls(**{key: _value(value, hints[key], f"{where}.{key}") for key, value in raw.items()})


def _replace(section, overrides: dict[str, Any], where: str):
    hints = typing.get_type_hints(type(section))
    _unknown(overrides, {f.name for f in dataclasses.fields(section)}, where)
    try:
        return dataclasses.replace(
            section, **{key: _value(value, hints[key], f"{where}.{key}") for key, value in overrides.items()}
        )
    except ParamsError as error:  # a section's own check names "train.head": say whose recipe set it
        shared = f"params.yaml: {where.rsplit('.', 1)[-1]}."
        raise ParamsError(str(error).replace(shared, f"params.yaml: {where}.", 1)) from None


def _value(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against the type ``hint`` (ints accepted for floats; nothing else is coerced)."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
    expected = " or ".join(
        "null"
        if o is type(None)
        else {int: "a whole number", float: "a number", bool: "true or false", str: "text"}.get(o, str(o))
        for o in options
    )
    raise ParamsError(f"params.yaml: {where} must be {expected}, got {value!r}")


def _unknown(raw: dict, known: set[str], where: str) -> None:
    unknown = sorted(str(key) for key in raw if key not in known)
    if unknown:
        prefix = f"{where}." if where else ""
        import difflib

        hints = [
            f"{prefix}{key}: did you mean {prefix}{close[0]}?"
            for key in unknown
            if (close := difflib.get_close_matches(key, sorted(known), n=1))
        ]
        raise ParamsError(
            f"params.yaml: unknown key(s) {', '.join(prefix + key for key in unknown)}"
            + (f" ({'; '.join(hints)})" if hints else "")
            + f". Known: {', '.join(sorted(known))}"
        )

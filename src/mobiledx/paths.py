"""The file contract: where every stage writes and reads, and the names of the release bundle's files.

Writers and readers both use these names; ``dvc.yaml`` declares the same paths (a test checks that
each stage's declared outputs are the ones named here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VARIANTS = ("float32", "float16", "dynamic_range", "int8")  # the .tflite variants export writes
DEFAULT_VARIANT = "int8"  # the variant released and run unless another is asked for
LABELS_FILE = "labels.txt"
MODEL_CARD_FILES = ("model_card.md", "model_card.json")
ENCODER_FILE = "metadata_encoder.json"  # how age/sex/site are encoded for a model with a metadata input
BUNDLE_DIR = "tflite"  # the release bundle's folder in the training's MLflow run
RELEASE_MODEL_FILE = "model.tflite"  # the released variant, always under this name
RELEASE_MANIFEST = "release.json"
EVALUATION_PLOTS = ("confusion_matrix.png", "roc_curves.png", "pr_curves.png", "reliability.png")
OPERATING_POINT_PLOT = "operating_point.png"


def variant_file(variant: str) -> str:
    """``model_<variant>.tflite``."""
    return f"model_{variant}.tflite"


def external_dir(name: str, root: Path = Path(".")) -> Path:
    """``data/external/<name>``: the outputs of external validation ``name`` (``external:`` in params.yaml)."""
    return root / "data" / "external" / name


@dataclass(frozen=True)
class DatasetPaths:
    """Every pipeline file of one dataset, relative to the repository root ``root``."""

    name: str
    root: Path = Path(".")

    def _folder(self, stage: str) -> Path:
        return self.root / "data" / stage / self.name

    @property
    def demo_raw(self) -> Path:
        """Where ``make_demo`` writes a demo dataset (real datasets live where params.yaml says)."""
        return self._folder("raw")

    # ingest
    @property
    def ingested(self) -> Path:
        return self._folder("ingested")

    @property
    def images(self) -> Path:
        return self.ingested / "images.npy"

    @property
    def manifest(self) -> Path:
        return self.ingested / "manifest.csv"

    @property
    def quarantine(self) -> Path:
        return self.ingested / "quarantine.csv"

    @property
    def dataset_info(self) -> Path:
        return self.ingested / "dataset.json"

    # validate
    @property
    def validated(self) -> Path:
        return self._folder("validated")

    @property
    def validation(self) -> Path:
        return self.validated / "validation.json"

    @property
    def validation_report(self) -> Path:
        return self.validated / "report.md"

    # split
    @property
    def split(self) -> Path:
        return self._folder("split")

    @property
    def assignment(self) -> Path:
        return self.split / "split.csv"

    @property
    def split_settings(self) -> Path:
        return self.split / "split.json"

    @property
    def split_summary(self) -> Path:
        return self.split / "split_summary.json"

    @property
    def class_counts(self) -> Path:
        return self.split / "class_counts.csv"

    # rebalance
    @property
    def rebalanced(self) -> Path:
        return self._folder("rebalanced")

    @property
    def train_index(self) -> Path:
        return self.rebalanced / "train_index.csv"

    @property
    def augmented(self) -> Path:
        return self.rebalanced / "augmented.npy"

    @property
    def class_weights(self) -> Path:
        return self.rebalanced / "class_weights.json"

    # train
    @property
    def model(self) -> Path:
        return self._folder("models")

    @property
    def keras_model(self) -> Path:
        return self.model / "model.keras"

    @property
    def encoder(self) -> Path:
        return self.model / ENCODER_FILE

    @property
    def history(self) -> Path:
        return self.model / "history.csv"

    @property
    def training_curves(self) -> Path:
        return self.model / "training_curves.png"

    @property
    def train_metrics(self) -> Path:
        return self.model / "train_metrics.json"

    @property
    def run_record(self) -> Path:
        """The MLflow run id that evaluate and export log into."""
        return self.model / "run.json"

    # evaluate
    @property
    def evaluation(self) -> Path:
        return self._folder("evaluation")

    @property
    def metrics(self) -> Path:
        return self.evaluation / "metrics.json"

    @property
    def validation_metrics(self) -> Path:
        return self.evaluation / "validation_metrics.json"

    @property
    def calibration(self) -> Path:
        return self.evaluation / "calibration.json"

    @property
    def operating_point(self) -> Path:
        """The threshold chosen on validation and its figures on both splits (``{}``: none configured)."""
        return self.evaluation / "operating_point.json"

    @property
    def evaluation_headline(self) -> Path:
        return self.evaluation / "headline.json"

    @property
    def predictions(self) -> Path:
        return self.evaluation / "predictions.csv"

    @property
    def subgroups(self) -> Path:
        return self.evaluation / "subgroups.csv"

    @property
    def gallery(self) -> Path:
        """One error-gallery PNG per class (:mod:`mobiledx.evaluation.gallery`)."""
        return self.evaluation / "gallery"

    @property
    def gallery_tiles(self) -> Path:
        return self.evaluation / "gallery.csv"

    # export
    @property
    def export(self) -> Path:
        return self._folder("export")

    def tflite(self, variant: str) -> Path:
        return self.export / variant_file(variant)

    @property
    def labels(self) -> Path:
        return self.export / LABELS_FILE

    @property
    def export_report(self) -> Path:
        return self.export / "export.json"

    @property
    def export_headline(self) -> Path:
        return self.export / "headline.json"

    @property
    def model_cards(self) -> tuple[Path, ...]:
        return tuple(self.export / name for name in MODEL_CARD_FILES)

"""The headline metric set, defined once, and the few headline figures per dataset and stage that DVC shows.

:data:`SPLIT_METRICS` are the figures of one split's predictions (``metrics.json``, ``validation_metrics.json``)
that every report leads with: evaluate gives each a bootstrap CI and logs it to MLflow as ``<split>_<key>``;
the model card, the logged model's linked metrics, ``mobiledx compare``, ``cv``, ``seeds`` and ``release`` read
the same list. Adding a metric there (and its statistic in :mod:`mobiledx.evaluation.classification`) adds it
everywhere.

DVC's view (``dvc exp show``, ``dvc metrics diff``):
Each stage declares one small metrics file keyed by the dataset, ``{"demo-skin": {"test_accuracy":
0.84, ...}}``, so ``dvc exp show`` names its columns ``demo-skin.test_accuracy`` (no file path) and
a dataset adds about 25 columns. Every detailed figure (per class, confidence intervals, every
variant) stays in the stage's other outputs and in MLflow.
"""

from __future__ import annotations

from pathlib import Path

from mobiledx.io import write_json

DECIMALS = 4
# key in a split's metrics -> how people read it
SPLIT_METRICS = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "roc_auc_macro": "macro ROC-AUC"}
# the operating point's figures on the test split, logged as test_op_<key>
OPERATING_POINT_METRICS = {"sensitivity": "sensitivity", "specificity": "specificity"}
# the shipped variant's figures linked to the logged model, logged as tflite_<variant>_<key>
SHIPPED_VARIANT_FIGURES = ("accuracy", "agreement_with_keras", "size_bytes", "latency_ms_1_thread",
                           "on_device_accuracy", "on_device_agreement_with_pipeline")
# dvc exp show columns keep their short, established names
_DVC_NAMES = {"roc_auc_macro": "macro_auc"}


def run_metrics(splits: tuple[str, ...] = ("val", "test"), operating_point: bool = True) -> tuple[str, ...]:
    """The headline metrics' names as a training run logs them: ``val_accuracy``, ..., ``test_op_specificity``."""
    names = [f"{split}_{key}" for split in splits for key in SPLIT_METRICS]
    if operating_point:
        names += [f"test_op_{key}" for key in OPERATING_POINT_METRICS]
    return tuple(names)


def linked_metrics(report: dict, metrics: dict, val_metrics: dict, operating: dict,
                   variant: str) -> dict[str, float]:
    """The figures linked to the logged model (MLflow's model page): its splits' headline and the shipped variant's."""
    linked = {f"{prefix}_{key}": split[key] for prefix, split in (("test", metrics), ("val", val_metrics))
              for key in SPLIT_METRICS if split.get(key) is not None}
    if operating:
        linked["op_threshold"] = operating["threshold"]
        linked.update({f"test_op_{key}": operating["test"][key] for key in OPERATING_POINT_METRICS
                       if operating["test"][key] is not None})
    shipped = report[variant]
    linked.update({f"tflite_{variant}_{key}": float(shipped[key]) for key in SHIPPED_VARIANT_FIGURES if key in shipped})
    return linked


def write_headline(path: Path, dataset: str, values: dict[str, float | int | None]) -> dict:
    """Write ``{dataset: values}`` (floats rounded to 4 decimals, ``None`` left out); returns the figures."""
    figures = {key: round(value, DECIMALS) if isinstance(value, float) else value
               for key, value in values.items() if value is not None}
    write_json(path, {dataset: figures})
    return figures


def evaluation_headline(test: dict, val: dict, operating: dict | None,
                        calibration: dict | None = None) -> dict[str, float | None]:
    """Test and validation :data:`SPLIT_METRICS`, the test balanced accuracy's 95 % CI, test ECE (calibrated, and
    as trained); the calibration temperature; the operating point's threshold and test figures."""
    interval = test.get("confidence_intervals_95", {}).get("balanced_accuracy", {})
    figures = {f"{split}_{_DVC_NAMES.get(key, key)}": values[key] for split, values in (("test", test), ("val", val))
               for key in SPLIT_METRICS}
    figures.update({
        "test_balanced_accuracy_ci_low": interval.get("low"),
        "test_balanced_accuracy_ci_high": interval.get("high"),
        "test_ece": test["expected_calibration_error"],
        "test_ece_uncalibrated": test.get("expected_calibration_error_uncalibrated"),
    })
    if calibration:
        figures["calibration_temperature"] = calibration["temperature"]
    if operating:
        figures.update({
            "op_threshold": operating["threshold"],
            **{f"test_op_{key}": operating["test"][key] for key in OPERATING_POINT_METRICS},
        })
    return figures


def export_headline(report: dict[str, dict], variant: str = "int8") -> dict[str, float | None]:
    """The shipped variant's accuracy, agreement with Keras, size, latency, and its figures on device."""
    figures = report[variant]
    return {
        f"{variant}_accuracy": figures["accuracy"],
        f"{variant}_agreement_with_keras": figures["agreement_with_keras"],
        f"{variant}_size_mb": figures["size_bytes"] / 1e6,
        f"{variant}_latency_ms": figures["latency_ms_1_thread"],
        f"{variant}_on_device_accuracy": figures.get("on_device_accuracy"),
        f"{variant}_on_device_agreement": figures.get("on_device_agreement_with_pipeline"),
    }

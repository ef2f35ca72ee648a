"""The few headline figures per dataset and stage that DVC shows (``dvc exp show``, ``dvc metrics diff``).

Each stage declares one small metrics file keyed by the dataset, ``{"demo-skin": {"test_accuracy":
0.84, ...}}``, so ``dvc exp show`` names its columns ``demo-skin.test_accuracy`` (no file path) and
a dataset adds about 25 columns. Every detailed figure (per class, confidence intervals, every
variant) stays in the stage's other outputs and in MLflow.
"""

from __future__ import annotations

from pathlib import Path

from mobiledx.io import write_json

DECIMALS = 4


def write_headline(path: Path, dataset: str, values: dict[str, float | int | None]) -> dict:
    """Write ``{dataset: values}`` (floats rounded to 4 decimals, ``None`` left out); returns the figures."""
    figures = {key: round(value, DECIMALS) if isinstance(value, float) else value
               for key, value in values.items() if value is not None}
    write_json(path, {dataset: figures})
    return figures


def evaluation_headline(test: dict, val: dict, operating: dict | None,
                        calibration: dict | None = None) -> dict[str, float | None]:
    """Test accuracy, balanced accuracy (95 % CI), macro AUC, ECE (calibrated, and as trained); validation
    balanced accuracy and AUC; the calibration temperature; the operating point's threshold and test
    sensitivity/specificity."""
    interval = test.get("confidence_intervals_95", {}).get("balanced_accuracy", {})
    figures = {
        "test_accuracy": test["accuracy"],
        "test_balanced_accuracy": test["balanced_accuracy"],
        "test_balanced_accuracy_ci_low": interval.get("low"),
        "test_balanced_accuracy_ci_high": interval.get("high"),
        "test_macro_auc": test["roc_auc_macro"],
        "test_ece": test["expected_calibration_error"],
        "test_ece_uncalibrated": test.get("expected_calibration_error_uncalibrated"),
        "val_balanced_accuracy": val["balanced_accuracy"],
        "val_macro_auc": val["roc_auc_macro"],
    }
    if calibration:
        figures["calibration_temperature"] = calibration["temperature"]
    if operating:
        figures.update({
            "op_threshold": operating["threshold"],
            "test_op_sensitivity": operating["test"]["sensitivity"],
            "test_op_specificity": operating["test"]["specificity"],
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

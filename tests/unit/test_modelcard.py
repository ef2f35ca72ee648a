import json
import math

import pytest

from mobiledx.params import ParamsError, TrainParams, parse_params
from mobiledx.release.modelcard import INTENDED_USE, build_model_card, render_markdown

INFO = {"dataset": "demo-skin", "kind": "ham10000", "classes": ["mel", "nv"], "image_size": 96,
        "raw_hash": "ab12cd34", "n_images": 700, "n_quarantined": 0}
PARAMS = parse_params({"seed": 42, "lr": 0.001, "train": {"epochs": 20, "alpha": 0.35, "weights": "none"},
                       "export": {"representative_images": 500}})
RUN = {"run_id": "run0123456789", "experiment_id": "1", "tracking_uri": "sqlite:////x/mlruns/mlflow.db"}
METRICS = {
    "n_images": 140, "accuracy": 0.9142, "balanced_accuracy": 0.9081, "roc_auc_macro": 0.9989,
    "baseline_majority_balanced_accuracy": 0.5,
    "confidence_intervals_95": {"accuracy": {"low": 0.8714, "high": 0.9571},
                                "balanced_accuracy": {"low": 0.7909, "high": 0.9873},
                                "roc_auc_macro": {"low": 0.9966, "high": 1.0}},
    "per_class": {"mel": {"support": 15, "sensitivity": 0.8667, "specificity": 0.936, "ppv": 0.65},
                  "nv": {"support": 125, "sensitivity": 0.8901, "specificity": 0.9796}},
}
SUBGROUPS = [
    {"attribute": "sex", "value": "female", "n": 62, "balanced_accuracy": 0.9375, "n_mel": 8,
     "sensitivity_mel": 1.0, "n_nv": 54, "sensitivity_nv": 0.875},
    {"attribute": "sex", "value": "unknown", "n": 1, "balanced_accuracy": 0.0, "n_mel": 0,
     "sensitivity_mel": float("nan"), "n_nv": 1, "sensitivity_nv": 0.0},
]
VARIANTS = {
    "float32": {"size_bytes": 4258472, "size_ratio_to_float32": 1.0, "accuracy": 0.9142, "balanced_accuracy": 0.9081,
                "accuracy_delta_vs_keras": 0.0, "balanced_accuracy_delta_vs_keras": 0.0, "agreement_with_keras": 1.0,
                "latency_ms_1_thread": 2.5, "latency_p95_ms_1_thread": 2.9, "latency_ms_2_threads": 1.5,
                "latency_p95_ms_2_threads": 1.7, "latency_ratio_to_float32": 1.0, "non_builtin_ops": [], "cpu_ops": [],
                "fully_delegated": True, "on_device_accuracy": 0.9142, "on_device_agreement_with_pipeline": 1.0},
    "int8": {"size_bytes": 1322200, "size_ratio_to_float32": 0.3106, "accuracy": 0.9214, "balanced_accuracy": 0.9097,
             "accuracy_delta_vs_keras": 0.0072, "balanced_accuracy_delta_vs_keras": 0.0016,
             "agreement_with_keras": 0.9643, "disagreements_with_keras": 5,
             "latency_ms_1_thread": 2.75, "latency_p95_ms_1_thread": 3.25,
             "latency_ms_2_threads": 1.6, "latency_p95_ms_2_threads": 1.8, "latency_ratio_to_float32": 1.1,
             "non_builtin_ops": [], "cpu_ops": ["SOFTMAX"], "fully_delegated": False, "on_device_accuracy": 0.9071,
             "on_device_agreement_with_pipeline": 0.9929},
}


def card(synthetic=True, **overrides):
    arguments = dict(dataset="demo-skin", info=INFO, synthetic=synthetic, params=PARAMS, run=RUN, metrics=METRICS,
                     subgroups=SUBGROUPS, variants=VARIANTS, files={"model_int8.tflite": "f00d"},
                     architecture="mobilenetv2_classifier", license="CC BY-NC-SA 4.0")
    arguments.update(overrides)
    return build_model_card(**arguments)


def test_card_holds_the_provenance_and_metrics():
    result = card()
    assert result["dataset"] == {"name": "demo-skin", "adapter_kind": "ham10000", "raw_data_sha256": "ab12cd34",
                                 "synthetic": True, "n_images": 700, "n_quarantined": 0, "license": "CC BY-NC-SA 4.0",
                                 "image_licenses": {}}
    assert result["classes"] == ["mel", "nv"]
    assert result["model"]["mlflow_run_id"] == "run0123456789"
    assert result["training"]["lr"] == 0.001 and result["training"]["seed"] == 42
    assert result["training"]["train"] == {**vars(TrainParams()), "epochs": 20}
    assert result["test_metrics"]["balanced_accuracy"] == {"value": 0.9081, "ci95_low": 0.7909, "ci95_high": 0.9873}
    assert result["test_metrics"]["per_class"]["mel"] == {"support": 15, "sensitivity": 0.8667, "specificity": 0.936}
    assert result["input"]["image"]["size"] == [96, 96] and result["input"]["metadata"] is None
    assert "stretched" in result["input"]["image"]["resize"] and "MediaPipe" in result["input"]["image"]["resize"]
    assert result["on_device"]["measured"] is True
    assert result["tflite_variants"]["int8"]["sha256"] == "f00d"
    assert result["tflite_variants"]["int8"]["agreement_with_keras"] == 0.9643
    assert "not a medical device" in result["intended_use"].lower()
    assert any("SYNTHETIC" in note for note in result["limitations"])


@pytest.mark.parametrize(("stride", "expected"), [
    (8, "input normalisation, the layers at 1/8 of the input resolution or more and the final softmax in float"),
    (0, "float32 input/output; input normalisation and the final softmax in float"),
])
def test_int8_description_names_the_layers_export_kept_in_float(stride, expected):
    params = parse_params({"export": {"int8_float_stride": stride}})
    assert expected in card(params=params)["tflite_variants"]["int8"]["description"]


def test_card_round_trips_through_strict_json():
    result = card()
    text = json.dumps(result, allow_nan=False)  # NaN subgroup cells became null
    assert json.loads(text) == result
    assert result["subgroups"][1]["sensitivity_mel"] is None


def test_markdown_shows_the_numbers_and_the_synthetic_warning():
    markdown = render_markdown(card())
    assert markdown.count("SYNTHETIC") >= 2  # banner at the top and in the limitations
    assert markdown.index("SYNTHETIC") < markdown.index("## Intended use")
    for number in ("0.914", "0.791 – 0.987", "0.999", "0.867", "0.936", "0.938", "4.258", "0.311", "0.964 (5 differ)",
                   "The test split has 140 images: one image that changes class moves accuracy by 0.007",
                   "+0.007", "2.75 / 3.25", "1.60 / 1.80", "0.907", "0.993", "ab12cd34", "run0123456789",
                   "no (SOFTMAX on reference kernels)", "CC BY-NC-SA 4.0"):
        assert number in markdown, number
    assert INTENDED_USE in markdown and "mel, nv" in markdown
    assert "fewer than 30 test images (smallest: 1)" in markdown
    assert "train.epochs: 20" in markdown


def test_real_data_card_has_no_synthetic_warning_but_keeps_the_other_limitations():
    markdown = render_markdown(card(synthetic=False))
    assert "SYNTHETIC" not in markdown and "Synthetic data: **no**" in markdown
    assert "Dataset shift" in markdown and "not validated for clinical use" in markdown


def test_non_commercial_image_licences_are_summarised_as_a_limitation():
    result = card(image_licenses={"CC-BY-NC": 120, "CC-0": 80})
    assert result["dataset"]["image_licenses"] == {"CC-BY-NC": 120, "CC-0": 80}
    markdown = render_markdown(result)
    assert "images per licence: CC-BY-NC 120, CC-0 80" in markdown
    assert "120 CC-BY-NC image(s) of the dataset allow NON-COMMERCIAL use only" in markdown
    assert "NON-COMMERCIAL" not in render_markdown(card(image_licenses={"CC-0": 80}, license="CC0 1.0"))


def test_missing_on_device_figures_are_explained():
    figures = {
        name: {k: v for k, v in values.items() if not k.startswith("on_device")} for name, values in VARIANTS.items()
    }
    markdown = render_markdown(
        card(variants=figures, on_device_note="the dataset is shipped as arrays (no image files)")
    )
    assert "No on-device figures: the dataset is shipped as arrays (no image files)." in markdown


def test_metadata_encoding_is_described_when_present():
    encoding = {"features": ["age", "sex=male", "site=back"], "age": "age / 100, missing -> 0"}
    result = card(metadata_encoding=encoding)
    assert result["input"]["metadata"] == encoding
    assert "age / 100" in render_markdown(result)
    assert math.isclose(json.loads(json.dumps(result))["input"]["image"]["pixel_range"][1], 255)


def test_synthetic_flag_is_parsed_from_the_dataset_entry():
    params = parse_params(
        {
            "datasets": {
                "demo": {"kind": "ham10000", "path": "x", "synthetic": True},
                "real": {"kind": "ham10000", "path": "y"},
            }
        }
    )
    assert params.dataset("demo").synthetic is True
    assert params.dataset("real").synthetic is False
    with pytest.raises(ParamsError, match="synthetic must be true or false"):
        parse_params({"datasets": {"bad": {"kind": "ham10000", "path": "y", "synthetic": "yes"}}})


VALIDATION = {**METRICS, "n_images": 105, "balanced_accuracy": 0.8877,
              "confidence_intervals_95": {"balanced_accuracy": {"low": 0.80, "high": 0.95}}}
OPERATING = {"class": "mel", "target_metric": "sensitivity", "target_value": 0.9, "threshold": 0.2314,
             "chosen_on": "validation",
             "validation": {"sensitivity": 0.9231, "specificity": 0.81, "ppv": 0.4, "npv": 0.99},
             "test": {"sensitivity": 0.8667, "specificity": 0.84, "ppv": 0.4194, "npv": 0.9813, "tp": 13, "fn": 2,
                      "fp": 18, "tn": 107},
             "test_confidence_intervals_95": {"sensitivity": {"low": 0.6667, "high": 1.0},
                                              "specificity": {"low": 0.78, "high": 0.9},
                                              "ppv": {"low": 0.25, "high": 0.6}, "npv": {"low": 0.95, "high": 1.0}}}


def test_card_reports_validation_and_the_operating_point_chosen_on_it():
    subgroups = [{**SUBGROUPS[0], "op_n_positive": 8, "op_sensitivity": 0.875, "op_specificity": 0.8333}]
    result = card(validation_metrics=VALIDATION, operating=OPERATING, subgroups=subgroups)
    assert result["validation_metrics"]["balanced_accuracy"] == {"value": 0.8877, "ci95_low": 0.80, "ci95_high": 0.95}
    point = result["operating_point"]
    assert point["rule"] == "refer when p(mel) >= 0.2314 (chosen for sensitivity >= 0.9 on the validation split)"
    assert point["test"]["sensitivity"] == {"value": 0.8667, "ci95_low": 0.6667, "ci95_high": 1.0}
    assert point["test_counts"] == {"tp": 13, "fp": 18, "tn": 107, "fn": 2}
    assert result["output"]["operating_point"] == point["rule"]
    markdown = render_markdown(result)
    validation, test, operating = (markdown.index(f"## {title}") for title in (
        "Validation metrics", "Test metrics", "Operating point"))
    assert validation < test < operating
    assert "| PPV | 0.400 | 0.419 | 0.250 – 0.600 |" in markdown
    assert "13 true positives, 2 missed, 18 false alarms, 107 true negatives" in markdown
    assert "| sex | female | 62 | 0.938 | 1.000 | 0.875 | 0.875 | 0.833 |" in markdown  # subgroup at the threshold
    assert "Decision: refer when p(mel) >= 0.2314" in markdown


def test_card_without_an_operating_point_says_how_to_set_one():
    result = card()
    assert result["operating_point"] is None and result["output"]["operating_point"] is None
    assert "None configured (`evaluate.operating_class`" in render_markdown(result)


ENVIRONMENT = {"lock_sha256": "9f" * 32, "numpy": "2.4.6", "tensorflow": "2.21.0 (tensorflow_cpu)",
               "cpu_simd": "AVX,AVX2,FMA3", "tf_intra_op_threads": "1", "tf_op_determinism": "true"}


def test_card_lists_the_environment_the_training_run_recorded():
    result = card(environment=ENVIRONMENT)
    assert result["environment"] == {"recorded_by": "train", "values": ENVIRONMENT}
    assert json.loads(json.dumps(result, allow_nan=False))["environment"]["values"] == ENVIRONMENT
    markdown = render_markdown(result)
    section = markdown[markdown.index("## Environment"):markdown.index("## Validation metrics")]
    assert markdown.index("## Training") < markdown.index("## Environment")
    assert "recorded by the training process" in section and "`env.*`" in section
    for key, value in ENVIRONMENT.items():
        assert f"- {key}: `{value}`" in section, key


def test_card_says_when_the_environment_is_the_exports_or_missing():
    markdown = render_markdown(card(environment={"lock_sha256": "none"}, environment_recorded_by="export"))
    assert "recorded by the export process: the training run recorded none" in markdown
    assert "- lock_sha256: `none`" in markdown and "`none`: no lock file" in markdown
    result = card()
    assert result["environment"] == {"recorded_by": "train", "values": {}}
    assert "## Environment\n\nNot recorded." in render_markdown(result)

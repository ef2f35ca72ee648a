"""Temperature scaling: fitted on validation, argmax untouched, folded exactly into the model's last layer."""

import numpy as np
import pytest

from mobiledx.evaluation.calibration import (
    apply_temperature,
    fit_temperature,
    fold_temperature,
    negative_log_likelihood,
)
from mobiledx.evaluation.classification import expected_calibration_error


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def _overconfident(n: int, sharpening: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z) (the true probabilities) and a model reporting softmax(sharpening * z)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, 5))
    truth = _softmax(logits)
    labels = np.array([rng.choice(5, p=row) for row in truth])
    return labels, _softmax(sharpening * logits).astype(np.float32)


@pytest.mark.parametrize("sharpening", [0.5, 1.0, 2.5])
def test_the_fitted_temperature_undoes_a_known_over_or_underconfidence(sharpening):
    labels, reported = _overconfident(20_000, sharpening)
    assert fit_temperature(labels, reported) == pytest.approx(sharpening, rel=0.05)


def test_calibrating_lowers_the_error_and_never_changes_the_top_class():
    labels, reported = _overconfident(4_000, 3.0, seed=1)
    temperature = fit_temperature(labels[:2_000], reported[:2_000])  # fitted on one half, judged on the other
    held_out, calibrated = reported[2_000:], apply_temperature(reported[2_000:], temperature)
    assert np.array_equal(held_out.argmax(1), calibrated.argmax(1))
    assert np.allclose(calibrated.sum(axis=1), 1.0, atol=1e-6)
    before, after = (expected_calibration_error(labels[2_000:], p) for p in (held_out, calibrated))
    assert after <= 0.6 * before, (before, after)
    assert negative_log_likelihood(labels[2_000:], calibrated) < negative_log_likelihood(labels[2_000:], held_out)


def test_a_saturated_softmax_still_fits():
    labels = np.array([0, 1, 1, 0])
    reported = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]], np.float32)  # float32 rounded to 0/1
    temperature = fit_temperature(labels, reported)
    assert np.isfinite(temperature) and temperature > 1  # one confident mistake: soften
    assert np.isfinite(apply_temperature(reported, temperature)).all()


def test_fitting_on_no_images_is_a_clear_error():
    with pytest.raises(ValueError, match="no validation images"):
        fit_temperature(np.array([], int), np.zeros((0, 3), np.float32))


@pytest.mark.parametrize("head, classes", [("dense", 3), ("sigmoid", 2)])
def test_the_folded_model_returns_exactly_the_calibrated_scores(head, classes):
    import keras

    from mobiledx.models import build_classifier

    keras.utils.set_random_seed(0)
    model = build_classifier(classes, 32, alpha=0.35, weights="none", head=head, dense_units=8)
    logit = model.get_layer("positive_logit" if head == "sigmoid" else "probabilities")
    rng = np.random.default_rng(0)  # confident, varied scores: the temperature matters
    logit.set_weights([rng.normal(0, 3, w.shape).astype(np.float32) for w in logit.get_weights()])
    pixels = np.random.default_rng(0).uniform(0, 255, (16, 32, 32, 3)).astype(np.float32)
    before = model.predict(pixels, verbose=0)
    fold_temperature(model, 2.5)
    after = model.predict(pixels, verbose=0)
    assert np.allclose(after, apply_temperature(before, 2.5), atol=2e-5)
    assert np.array_equal(after.argmax(1), before.argmax(1))
    assert not np.allclose(after, before, atol=1e-3)


def test_a_temperature_that_generalises_lowers_the_held_out_likelihood_within_validation():
    from mobiledx.evaluation.calibration import held_out_temperature_gain

    labels, reported = _overconfident(1_000, 3.0, seed=2)
    gain = held_out_temperature_gain(labels, reported, seed=0)
    assert gain["nll_fitted"] < 0.9 * gain["nll_as_trained"]
    assert gain == held_out_temperature_gain(labels, reported, seed=0)  # seeded folds


def test_the_ece_floor_is_what_a_perfectly_calibrated_model_shows_and_shrinks_with_more_images():
    from mobiledx.evaluation.calibration import expected_ece_if_calibrated

    floors = []
    for n in (100, 1_600):
        labels, calibrated = _overconfident(n, 1.0, seed=3)  # labels drawn from the reported scores
        floors.append(expected_ece_if_calibrated(calibrated, seed=0))
        assert 0.4 * floors[-1] < expected_calibration_error(labels, calibrated) < 2.5 * floors[-1]
    assert floors[1] < 0.5 * floors[0]  # sampling noise: about 1/sqrt(n)


def _split(labels: np.ndarray, reported: np.ndarray):
    import pandas as pd

    from mobiledx.evaluation.predictions import SplitPredictions

    return SplitPredictions(pd.DataFrame({"image_id": range(len(labels))}), np.arange(len(labels)), labels,
                            reported, reported)


def test_evaluate_applies_a_temperature_that_generalises_and_reports_before_and_after():
    from mobiledx.evaluation.predictions import calibrate_splits

    labels, reported = _overconfident(3_000, 3.0, seed=4)
    val, test = _split(labels[:1_000], reported[:1_000]), _split(labels[1_000:], reported[1_000:])
    report = calibrate_splits("temperature", val, test, seed=0)
    assert report["applied"] and report["temperature"] == pytest.approx(3.0, rel=0.15)
    assert report["test"]["ece_after"] <= 0.6 * report["test"]["ece_before"]
    assert report["test"]["nll_after"] < report["test"]["nll_before"]
    assert report["test"]["top_class_changes"] == 0
    assert np.allclose(test.probabilities, apply_temperature(test.uncalibrated, report["temperature"]))


def test_evaluate_keeps_the_scores_when_a_temperature_would_fit_the_noise_of_a_small_validation_split():
    from mobiledx.evaluation.predictions import calibrate_splits

    labels, reported = _overconfident(400, 1.0, seed=5)  # already calibrated; validation of 60 images
    val, test = _split(labels[:60], reported[:60]), _split(labels[60:], reported[60:])
    report = calibrate_splits("temperature", val, test, seed=0)
    assert not report["applied"] and report["temperature"] == 1.0
    assert report["reason"].startswith("not applied: a temperature fitted on 4/5 of the validation split")
    assert test.probabilities is test.uncalibrated and report["test"]["ece_after"] == report["test"]["ece_before"]
    none = calibrate_splits("none", _split(labels[:60], reported[:60]), _split(labels[60:], reported[60:]), seed=0)
    assert not none["applied"] and "cross_validated_nll" not in none

"""Temperature scaling: scores that read as probabilities, fitted on validation and shipped inside the model.

A classifier's output is ``p = softmax(z)``. Temperature scaling (Guo et al., ICML 2017) replaces it with
``softmax(z / T)``, one number ``T > 0`` fitted by minimising the negative log-likelihood of the
validation labels. Dividing every logit by the same positive number keeps their order, so the top class
(accuracy, balanced accuracy, the confusion matrix) never changes; only the confidence does. Since
``log p = z - logsumexp(z)``, ``softmax(log p / T) = softmax(z / T)``: the fit needs only the
probabilities the pipeline already has, and :func:`fold_temperature` ships it by dividing the last Dense
layer's kernel and bias by ``T`` (no extra op in the ``.tflite``; MediaPipe and LiteRT return calibrated
scores).

Why one temperature and not vector or matrix scaling: validation splits here are small (the demos hold
about 100 images, some HAM10000 classes a few dozen), one parameter cannot overfit them, and it cannot
move the argmax, which per-class scales can.
"""

from __future__ import annotations

import numpy as np

# T is searched on log T within [1/20, 20]: beyond, a model is degenerate (all scores 0 or 1).
_LOG_T_BOUNDS = (float(np.log(0.05)), float(np.log(20.0)))
_SMALLEST_PROBABILITY = 1e-12  # a saturated softmax rounds to 0 in float32: log(0) would be -inf


def _log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probabilities, np.float64), _SMALLEST_PROBABILITY, 1.0))


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(probabilities) / temperature)`` row by row (float32, rows sum to 1)."""
    scaled = _log_probabilities(probabilities) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def negative_log_likelihood(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean ``-log p(true class)`` (probabilities clipped at 1e-12)."""
    y_true = np.asarray(y_true)
    return float(-_log_probabilities(probabilities)[np.arange(len(y_true)), y_true].mean())


def fit_temperature(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of ``y_true`` (integer labels) under
    ``softmax(log(probabilities) / T)``: a bounded 1-D search on log T, deterministic."""
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    y_true = np.asarray(y_true)
    if len(y_true) == 0:
        raise ValueError("no validation images to fit the temperature on")
    log_p = _log_probabilities(probabilities)
    true_log_p = log_p[np.arange(len(y_true)), y_true]

    def nll(log_t: float) -> float:
        inverse = np.exp(-log_t)
        return float(np.mean(logsumexp(log_p * inverse, axis=1) - true_log_p * inverse))

    found = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return float(np.exp(found.x))


def held_out_temperature_gain(y_true: np.ndarray, probabilities: np.ndarray, folds: int = 5,
                              seed: int = 0) -> dict[str, float]:
    """Does a fitted temperature generalise? Cross-validated on the validation split itself: for each of
    ``folds`` seeded folds, T is fitted on the others and judged on it. Returns the held-out negative
    log-likelihood with those temperatures (``nll_fitted``) and with none (``nll_as_trained``).

    On a small, nearly error-free validation split (the demos: 67-112 images, 2-3 mistakes) the fitted T
    mostly describes which few images happened to be wrong: a T that does not lower the held-out NLL
    would make the test scores worse, not better."""
    y_true = np.asarray(y_true)
    order = np.random.default_rng(seed).permutation(len(y_true))
    fitted, as_trained = [], []
    for held_out in np.array_split(order, min(folds, len(y_true))):
        fit = np.setdiff1d(order, held_out)
        if len(fit) == 0 or len(held_out) == 0:
            continue
        temperature = fit_temperature(y_true[fit], probabilities[fit])
        fitted.append(negative_log_likelihood(y_true[held_out], apply_temperature(probabilities[held_out],
                                                                                  temperature)) * len(held_out))
        as_trained.append(negative_log_likelihood(y_true[held_out], probabilities[held_out]) * len(held_out))
    return {"nll_fitted": float(sum(fitted) / len(y_true)), "nll_as_trained": float(sum(as_trained) / len(y_true))}


def expected_ece_if_calibrated(probabilities: np.ndarray, draws: int = 200, seed: int = 0) -> float:
    """The expected calibration error a PERFECTLY calibrated model with these scores would still show on
    this many images: labels drawn from the scores themselves, ECE averaged over ``draws`` seeded draws.
    An ECE near this floor is sampling noise; no calibration can lower it."""
    from mobiledx.evaluation.classification import expected_calibration_error

    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(np.asarray(probabilities, np.float64), axis=1)
    cumulative /= cumulative[:, -1:]
    total = 0.0
    for _ in range(draws):
        labels = (rng.random((len(cumulative), 1)) > cumulative).sum(axis=1)
        total += expected_calibration_error(labels, probabilities)
    return total / draws


def logit_layer(model):
    """The Dense layer whose output is the model's logits: ``probabilities`` (softmax head) or
    ``positive_logit`` (sigmoid head, turned into a logit pair before the softmax)."""
    names = {layer.name for layer in model.layers}
    for name in ("positive_logit", "probabilities"):
        if name in names:
            return model.get_layer(name)
    raise ValueError(f"{model.name} has no 'probabilities' or 'positive_logit' Dense layer to calibrate")


def fold_temperature(model, temperature: float) -> None:
    """Divide the logit layer's kernel and bias by ``temperature`` in place: the model then outputs
    ``softmax(z / T)``, exactly what :func:`apply_temperature` computes from its old output."""
    if temperature == 1.0:
        return
    layer = logit_layer(model)
    layer.set_weights([weight / np.float32(temperature) for weight in layer.get_weights()])

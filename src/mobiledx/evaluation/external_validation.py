"""External validation: a model trained on one dataset, judged on another clinic's images.

The question a clinician asks of a model is how it does on photos it was not made from. The model's class
probabilities are mapped onto the other dataset's taxonomy by summing them per target class (HAM10000's 7
diagnoses onto ISIC's benign/malignant, say), and the same metric set as ``evaluate`` is computed on every
image of the other dataset except those it shares with the data the model was fitted or chosen on (its
train and validation splits, by ISIC id or content: :mod:`mobiledx.data.overlap`), which are excluded and listed.
"""

from __future__ import annotations

import numpy as np

from mobiledx.errors import MobiledxError

FITTED_ON = ("train", "val")  # the splits whose images a model has seen: fitted on, or chosen and calibrated on


class ExternalValidationError(MobiledxError):
    """An external validation that cannot be run as declared (a label map that does not fit, other sizes)."""


def mapped_probabilities(probabilities: np.ndarray, source: list[str], target: list[str],
                         labels: dict[str, str]) -> np.ndarray:
    """``probabilities`` over the ``source`` classes as probabilities over the ``target`` classes: each target
    class gets the sum of the source classes ``labels`` maps to it."""
    unmapped = [name for name in source if name not in labels]
    unknown = sorted({value for value in labels.values() if value not in target})
    extra = sorted(set(labels) - set(source))
    if unmapped or unknown or extra:
        problems = [f"the model's classes {unmapped} have no target" if unmapped else "",
                    f"targets {unknown} are not classes of the data ({', '.join(target)})" if unknown else "",
                    f"keys {extra} are not classes of the model ({', '.join(source)})" if extra else ""]
        raise ExternalValidationError(f"the label map does not fit: {'; '.join(p for p in problems if p)}. Fix: "
                                      f"map each of {', '.join(source)} to one of {', '.join(target)}")
    matrix = np.zeros((len(source), len(target)), np.float32)
    for row, name in enumerate(source):
        matrix[row, target.index(labels[name])] = 1.0
    return probabilities @ matrix

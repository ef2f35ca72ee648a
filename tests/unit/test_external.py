"""External validation: the label map onto another taxonomy, and its declaration in params.yaml."""

import numpy as np
import pytest

from mobiledx.evaluation.external_validation import ExternalValidationError, mapped_probabilities
from mobiledx.params import ParamsError, parse_params

SOURCE = ["akiec", "bcc", "mel", "nv"]
MAP = {"akiec": "malignant", "bcc": "malignant", "mel": "malignant", "nv": "benign"}


def test_probabilities_of_the_models_classes_are_summed_per_target_class():
    probabilities = np.array([[0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 0.05, 0.95]], np.float32)
    mapped = mapped_probabilities(probabilities, SOURCE, ["benign", "malignant"], MAP)
    np.testing.assert_allclose(mapped, [[0.4, 0.6], [0.95, 0.05]], atol=1e-6)


@pytest.mark.parametrize("labels, message", [
    ({**MAP, "nv": "Benign"}, r"targets \['Benign'\] are not classes of the data \(benign, malignant\)"),
    ({k: v for k, v in MAP.items() if k != "bcc"}, r"the model's classes \['bcc'\] have no target"),
    ({**MAP, "vasc": "benign"}, r"keys \['vasc'\] are not classes of the model"),
])
def test_a_label_map_that_does_not_fit_is_one_clear_error_with_the_fix(labels, message):
    with pytest.raises(ExternalValidationError, match=message + r".*Fix: map each of akiec, bcc, mel, nv to one of"):
        mapped_probabilities(np.full((1, 4), 0.25, np.float32), SOURCE, ["benign", "malignant"], labels)


def test_external_entries_name_a_trained_model_and_a_registered_dataset():
    datasets = {"skin": {"kind": "ham10000", "path": "a"}}
    clinic = {"clinic": {"kind": "isic_archive", "path": "b"}}
    parsed = parse_params({"datasets": datasets, "external_datasets": clinic,
                           "external": {"x": {"model": "skin", "data": "clinic", "labels": MAP}}})
    assert parsed.external["x"].data == "clinic" and parsed.dataset("clinic").kind == "isic_archive"
    for external, message in [({"model": "clinic", "data": "skin", "labels": MAP}, r"external.x.model must name a "
                                                                                    r"dataset under datasets"),
                              ({"model": "skin", "data": "elsewhere", "labels": MAP}, r"external.x.data must name"),
                              ({"model": "skin", "data": "clinic", "labels": {}}, r"external.x.labels must map")]:
        with pytest.raises(ParamsError, match=message):
            parse_params({"datasets": datasets, "external_datasets": clinic, "external": {"x": external}})
    with pytest.raises(ParamsError, match=r"external_datasets names \['skin'\] are also under datasets"):
        parse_params({"datasets": datasets, "external_datasets": datasets})

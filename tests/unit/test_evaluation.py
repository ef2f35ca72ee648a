import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from mobiledx.evaluation import classification_metrics, predictions_frame

CLASSES = ["a", "b", "c"]
Y_TRUE = np.array([0, 0, 1, 1, 2, 2, 0, 0])
# argmax predictions: 0, 1, 1, 1, 2, 0, 0, 0
PROBS = np.array([
    [0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1],
    [0.1, 0.2, 0.7], [0.5, 0.1, 0.4], [0.9, 0.05, 0.05], [0.6, 0.3, 0.1],
])


def test_metrics_match_hand_computed_values():
    m = classification_metrics(Y_TRUE, PROBS, CLASSES)
    assert m["accuracy"] == pytest.approx(6 / 8)
    # recalls: a 3/4, b 2/2, c 1/2
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 + 1 / 2) / 3)
    assert m["per_class"]["a"]["sensitivity"] == pytest.approx(3 / 4)
    # class a negatives: 4 images, one (c predicted a) is a false positive
    assert m["per_class"]["a"]["specificity"] == pytest.approx(3 / 4)
    assert m["per_class"]["c"]["specificity"] == pytest.approx(1.0)
    assert m["confusion_matrix"] == [[3, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["baseline_majority_accuracy"] == pytest.approx(4 / 8)
    assert m["baseline_majority_balanced_accuracy"] == pytest.approx(1 / 3)


def test_metrics_match_scikit_learn():
    m = classification_metrics(Y_TRUE, PROBS, CLASSES)
    y_pred = PROBS.argmax(1)
    assert m["f1_macro"] == pytest.approx(skm.f1_score(Y_TRUE, y_pred, average="macro"))
    assert m["precision_macro"] == pytest.approx(skm.precision_score(Y_TRUE, y_pred, average="macro"))
    assert m["roc_auc_macro"] == pytest.approx(skm.roc_auc_score(Y_TRUE, PROBS, multi_class="ovr", average="macro"))


def test_binary_auc_uses_the_positive_column():
    y = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    m = classification_metrics(y, probs, ["hem", "all"])
    assert m["roc_auc_macro"] == pytest.approx(skm.roc_auc_score(y, probs[:, 1]))


def test_predictions_frame_lists_every_image():
    frame = predictions_frame(pd.Series([f"x{i}" for i in range(8)]), Y_TRUE, PROBS, CLASSES)
    assert list(frame.columns) == ["image_id", "actual", "predicted", "p_a", "p_b", "p_c"]
    assert frame.loc[5, "actual"] == "c" and frame.loc[5, "predicted"] == "a"

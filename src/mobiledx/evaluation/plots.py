"""PNG plots people look at: training curves, confusion matrix, ROC and PR curves, calibration, operating point,
saliency galleries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mobiledx.evaluation.classification import reliability_table
from mobiledx.io import atomic_path
from mobiledx.paths import EVALUATION_PLOTS, OPERATING_POINT_PLOT


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    _figure().close(fig)


def training_curves(history: pd.DataFrame, path: str | Path, title: str) -> None:
    """Loss and accuracy per epoch, train vs validation, and the learning rate when logged."""
    plt = _figure()
    with_lr = "learning_rate" in history
    fig, axes = plt.subplots(1, 3 if with_lr else 2, figsize=(15 if with_lr else 10, 4))
    if with_lr:
        axes[2].plot(history["epoch"], history["learning_rate"], marker="o")
        axes[2].set(xlabel="epoch", title="learning rate", yscale="log")
        axes[2].grid(alpha=0.3)
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for column, style in ((metric, "-"), (f"val_{metric}", "--")):
            if column in history:
                axis.plot(history["epoch"], history[column], style, marker="o", label=column)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.suptitle(title)
    _save(fig, path)


def confusion_matrix(confusion: np.ndarray, classes: list[str], path: str | Path, title: str) -> None:
    """Counts with row-normalised colour (each row = one true class)."""
    plt = _figure()
    confusion = np.asarray(confusion)
    normalised = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    size = 1.0 + 0.6 * len(classes)
    fig, axis = plt.subplots(figsize=(size + 1.5, size))
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(confusion):
        colour = "white" if normalised[i, j] > 0.5 else "black"
        axis.text(j, i, f"{count}", ha="center", va="center", color=colour)
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("actual")
    axis.set_title(title)
    fig.colorbar(image, ax=axis, label="fraction of actual class")
    _save(fig, path)


def roc_curves(y_true: np.ndarray, probabilities: np.ndarray, classes: list[str], path: str | Path, title: str) -> None:
    """One-vs-rest ROC curve per class present in the test split."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _figure()
    fig, axis = plt.subplots(figsize=(6, 5))
    for i, name in enumerate(classes):
        positives = np.asarray(y_true) == i
        if positives.all() or not positives.any():
            continue
        fpr, tpr, _ = roc_curve(positives, probabilities[:, i])
        axis.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(positives, probabilities[:, i]):.2f})")
    axis.plot([0, 1], [0, 1], ":", color="grey")
    axis.set_xlabel("1 - specificity")
    axis.set_ylabel("sensitivity")
    axis.set_title(title)
    axis.legend(fontsize="small")
    _save(fig, path)


def pr_curves(y_true: np.ndarray, probabilities: np.ndarray, classes: list[str], path: str | Path, title: str) -> None:
    """One-vs-rest precision-recall curve per class present in the test split; dotted lines = prevalence."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = _figure()
    fig, axis = plt.subplots(figsize=(6, 5))
    for i, name in enumerate(classes):
        positives = np.asarray(y_true) == i
        if positives.all() or not positives.any():
            continue
        precision, recall, _ = precision_recall_curve(positives, probabilities[:, i])
        (line,) = axis.plot(
            recall, precision, label=f"{name} (AP {average_precision_score(positives, probabilities[:, i]):.2f})"
        )
        axis.axhline(positives.mean(), linestyle=":", color=line.get_color(), linewidth=0.8)
    axis.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title=title, xlim=(0, 1), ylim=(0, 1.02))
    axis.legend(fontsize="small")
    _save(fig, path)


def reliability_diagrams(panels: list[tuple[str, pd.DataFrame, float]], path: str | Path, title: str) -> None:
    """One reliability diagram per ``(label, table, ece)`` panel (two per row: e.g. validation and test, as
    trained then calibrated): accuracy against confidence of the top label per bin, the count on each
    bar; the diagonal is perfect calibration."""
    plt = _figure()
    rows = -(-len(panels) // 2)
    fig, axes = plt.subplots(rows, 2, figsize=(10, 4.6 * rows), squeeze=False)
    for axis, (label, table, ece) in zip(axes.flat, panels):
        widths = table["bin_high"] - table["bin_low"]
        axis.bar(table["bin_low"], table["accuracy"], width=widths, align="edge", edgecolor="black", alpha=0.7,
                 label="accuracy")
        axis.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
        for row in table.itertuples():
            axis.text(row.bin_low + (row.bin_high - row.bin_low) / 2, min(row.accuracy + 0.02, 0.97), str(row.count),
                      ha="center", fontsize="x-small")
        axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top-label probability)", ylabel="accuracy",
                 title=f"{label}: ECE {ece:.3f}")
        axis.legend(loc="upper left", fontsize="small")
    for axis in list(axes.flat)[len(panels):]:
        axis.axis("off")
    fig.suptitle(title)
    _save(fig, path)


def operating_point(splits: dict[str, tuple[np.ndarray, np.ndarray]], class_name: str, threshold: float,
                    path: str | Path, title: str) -> None:
    """For the class of interest: ROC curve of each split with the operating point marked, and the
    calibration of p(class) (observed frequency per probability bin). ``splits``: name -> (is_class, scores)."""
    from sklearn.metrics import roc_curve

    plt = _figure()
    fig, (roc, calibration) = plt.subplots(1, 2, figsize=(11, 5))
    edges = np.linspace(0.0, 1.0, 11)
    for name, (is_class, scores) in splits.items():
        if is_class.all() or not is_class.any():
            continue
        fpr, tpr, _ = roc_curve(is_class, scores)
        (line,) = roc.plot(fpr, tpr, label=name)
        referred = scores >= threshold
        roc.plot([referred[~is_class].mean()], [referred[is_class].mean()], "o", color=line.get_color(),
                 markersize=8, label=f"{name}: p({class_name}) >= {threshold:.3f}")
        bins = np.clip(np.digitize(scores, edges[1:-1]), 0, len(edges) - 2)
        filled = [b for b in range(len(edges) - 1) if (bins == b).any()]
        points = [(scores[bins == b].mean(), is_class[bins == b].mean(), int((bins == b).sum())) for b in filled]
        calibration.plot([x for x, _, _ in points], [y for _, y, _ in points], "o-", color=line.get_color(),
                         label=f"{name} (n per bin)")
        for x, y, count in points:
            calibration.annotate(str(count), (x, y), textcoords="offset points", xytext=(4, 4), fontsize="x-small",
                                 color=line.get_color())
    roc.plot([0, 1], [0, 1], ":", color="grey")
    roc.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"{title}: {class_name} vs the rest")
    roc.legend(fontsize="small", loc="lower right")
    calibration.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    calibration.axvline(threshold, linestyle="--", color="black", linewidth=0.8, label="operating threshold")
    calibration.set(xlabel=f"predicted p({class_name})", ylabel=f"observed frequency of {class_name}",
                    xlim=(0, 1), ylim=(0, 1), title=f"calibration of p({class_name})")
    calibration.legend(fontsize="small", loc="upper left")
    _save(fig, path)


def message(path: str | Path, text: str) -> None:
    """A plot that says why there is nothing to draw (the file every run declares still exists)."""
    plt = _figure()
    fig, axis = plt.subplots(figsize=(6, 1.5))
    axis.axis("off")
    axis.text(0.5, 0.5, text, ha="center", va="center")
    _save(fig, path)



def saliency_gallery(captions: list[str], panels: dict[str, np.ndarray], path: str | Path, title: str) -> None:
    """A column per image, its caption on top, and a row per panel (``{row title: (columns, H, W, 3)
    uint8}``: the image, then each saliency overlay), titled on the left."""
    plt = _figure()
    rows, columns = len(panels), len(captions)
    fig, axes = plt.subplots(rows, columns, figsize=(1.7 * columns + 0.6, 1.7 * rows + 0.9), squeeze=False)
    for row, (name, pictures) in enumerate(panels.items()):
        axes[row, 0].set_ylabel(name, fontsize=8)
        for column, picture in enumerate(pictures):
            axes[row, column].imshow(picture)
    for column, caption in enumerate(captions):
        axes[0, column].set_title(caption, fontsize=7)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def evaluation_plots(name: str, out: Path, classes: list[str], test, val, metrics: dict, operating: dict,
                     calibration: dict) -> list:
    """Write the evaluation plots into ``out``; returns their paths. ``test``, ``val``: the splits'
    :class:`mobiledx.evaluation.predictions.SplitPredictions`."""
    confusion_matrix(metrics["confusion_matrix"], classes, out / "confusion_matrix.png", f"{name}: test split")
    roc_curves(test.y_true, test.probabilities, classes, out / "roc_curves.png", f"{name}: ROC (one-vs-rest)")
    pr_curves(test.y_true, test.probabilities, classes, out / "pr_curves.png", f"{name}: precision-recall")
    after = "calibrated" if calibration["applied"] else "as trained (no temperature applied)"
    reliability_diagrams(
        [(f"{split_name}, as trained", reliability_table(split.y_true, split.uncalibrated),
          calibration[split_name]["ece_before"]) for split_name, split in (("validation", val), ("test", test))]
        + [(f"{split_name}, {after} (T = {calibration['temperature']:.2f})",
            reliability_table(split.y_true, split.probabilities), calibration[split_name]["ece_after"])
           for split_name, split in (("validation", val), ("test", test))],
        out / "reliability.png", f"{name}: reliability, temperature fitted on validation")
    if operating:
        positive = classes.index(operating["class"])
        splits = {split: (s.y_true == positive, s.probabilities[:, positive])
                  for split, s in (("validation", val), ("test", test))}
        operating_point(splits, operating["class"], operating["threshold"], out / OPERATING_POINT_PLOT, name)
    else:
        message(out / OPERATING_POINT_PLOT, f"{name}: no operating point (set evaluate.operating_class)")
    return [out / png for png in (*EVALUATION_PLOTS, OPERATING_POINT_PLOT)]

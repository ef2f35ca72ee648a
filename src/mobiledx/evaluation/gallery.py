"""Error gallery: per class, the test images the model got most confidently wrong and a few it got right,
each with where it looked (:mod:`mobiledx.models.saliency`).

For class c: **missed** (false negatives: images of c called something else, lowest p(c) first),
**false alarms** (false positives: other classes called c, highest p(c) first) and **correct** (images of c
called c, highest p(c) first). Every map explains the class the model *predicted*: what made it say so.
Cost is bounded by the tile count (classes × (2 · errors + correct) images), not by the split.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from mobiledx.data.cache import IngestedDataset
from mobiledx.io import write_csv
from mobiledx.models.saliency import MAP_TITLES, Explainer
from mobiledx.params import Params
from mobiledx.paths import DatasetPaths

KINDS = {"false_negative": "missed", "false_positive": "false alarm", "correct": "correct"}
TILE_COLUMNS = ["gallery_class", "kind", "position", "true_class", "predicted_class", "p_true", "p_predicted"]


def select_tiles(y_true: np.ndarray, probabilities: np.ndarray, classes: list[str], errors: int,
                 correct: int) -> pd.DataFrame:
    """The gallery's tiles, one row each (:data:`TILE_COLUMNS`): for every class, up to ``errors`` false
    negatives, ``errors`` false positives and ``correct`` true positives, most confident first (ties:
    split order). ``position`` indexes the split's rows; probabilities are the ones reported (calibrated)."""
    predicted = probabilities.argmax(axis=1)
    rows = []
    for index, name in enumerate(classes):
        p_class = probabilities[:, index]
        groups = {
            "false_negative": (np.flatnonzero((y_true == index) & (predicted != index)), 1.0, errors),
            "false_positive": (np.flatnonzero((y_true != index) & (predicted == index)), -1.0, errors),
            "correct": (np.flatnonzero((y_true == index) & (predicted == index)), -1.0, correct),
        }
        for kind, (positions, sign, count) in groups.items():
            order = positions[np.argsort(sign * p_class[positions], kind="stable")][:count]
            rows += [{"gallery_class": name, "kind": kind, "position": int(p), "true_class": classes[y_true[p]],
                      "predicted_class": classes[predicted[p]], "p_true": float(probabilities[p, y_true[p]]),
                      "p_predicted": float(probabilities[p, predicted[p]])} for p in order]
    return pd.DataFrame(rows, columns=TILE_COLUMNS)


def gallery_file(index: int, class_name: str) -> str:
    """``03_mel.png``: the class's position keeps the files in label order; anything but letters, digits,
    ``.``, ``_`` and ``-`` in a class name becomes ``_`` (names come from users' folders)."""
    return f"{index:02d}_{re.sub(r'[^A-Za-z0-9._-]+', '_', class_name)}.png"


def tile_caption(tile) -> str:
    """Three short lines above a tile (one row of :func:`select_tiles`, from ``itertuples``): the kind,
    the truth and what the model said, with p."""
    return (f"{KINDS[tile.kind]}\ntrue {tile.true_class}\nsaid {tile.predicted_class} "
            f"{100 * tile.p_predicted:.0f} %")


def write_gallery(folder: str | Path, dataset: str, classes: list[str], tiles: pd.DataFrame, images: np.ndarray,
                  maps: dict[str, np.ndarray], map_titles: dict[str, str]) -> list[Path]:
    """One PNG per class in ``folder`` (:func:`gallery_file`): a column per tile, the image as the model saw
    it, then each saliency map over it. ``images`` and every ``maps[name]`` have one entry per row of
    ``tiles``. Returns the files, in class order."""
    from mobiledx.evaluation import plots

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index, name in enumerate(classes):
        chosen = np.flatnonzero(tiles["gallery_class"].to_numpy() == name)
        path = folder / gallery_file(index, name)
        title = f"{dataset}: class {name}, test split: {_counts(tiles.iloc[chosen])}"
        if len(chosen) == 0:
            plots.message(path, f"{dataset}: class {name}: no test image is or was predicted as {name}")
        else:
            panels = _panels(images[chosen], {key: heat[chosen] for key, heat in maps.items()}, map_titles)
            plots.saliency_gallery([tile_caption(tile) for tile in tiles.iloc[chosen].itertuples()], panels, path,
                                   title)
        files.append(path)
    return files


def _counts(tiles: pd.DataFrame) -> str:
    shown = tiles["kind"].value_counts()
    return ", ".join(f"{shown.get(kind, 0)} {label}" for kind, label in KINDS.items())


def write_explanation(path: str | Path, image: np.ndarray, maps: dict[str, np.ndarray], map_titles: dict[str, str],
                      caption: str, title: str) -> None:
    """One image's explanation as a PNG: the image as the model saw it (H, W, 3), then each saliency map
    (``{name: (H, W)}``) over it, as one gallery column (``mobiledx predict --explain``)."""
    from mobiledx.evaluation import plots

    panels = _panels(image[None], {key: heat[None] for key, heat in maps.items()}, map_titles)
    plots.saliency_gallery([caption], panels, path, title)


def _panels(images: np.ndarray, maps: dict[str, np.ndarray], map_titles: dict[str, str]) -> dict[str, np.ndarray]:
    """The rows of a gallery: ``images`` (N, H, W, 3) as uint8, then each map (N, H, W) over them."""
    from mobiledx.models.saliency import overlay

    overlays = {map_titles[key]: np.stack([overlay(image, heat) for image, heat in zip(images, stack)])
                for key, stack in maps.items()}
    return {"image": images.astype(np.uint8), **overlays}


def gallery_for_split(name: str, paths: DatasetPaths, params: Params, model, data: IngestedDataset, test,
                      encoder) -> list:
    """Write the error gallery of the test split (one PNG per class) and its tile list ``gallery.csv``; returns
    the PNGs. ``test``: :class:`mobiledx.evaluation.predictions.SplitPredictions`. Only the tiles' images are
    read and explained, each for the class the model predicted."""
    tiles = select_tiles(test.y_true, test.probabilities, data.classes, params.evaluate.gallery_errors,
                         params.evaluate.gallery_correct)
    positions = tiles["position"].to_numpy()
    rows = test.rows[positions]
    images = data.images[rows]  # (tiles, size, size, 3) uint8: the pixels the model saw
    metadata = encoder.transform(data.manifest.iloc[rows]) if encoder else None
    explainer = Explainer(model)
    maps = explainer.explain(images, test.probabilities[positions].argmax(axis=1), metadata)
    tiles.insert(0, "image_id", test.frame["image_id"].to_numpy()[positions])
    tiles["maps"] = "+".join(explainer.map_names)
    write_csv(paths.gallery_tiles, tiles)
    return write_gallery(paths.gallery, name, data.classes, tiles, images, maps, MAP_TITLES)

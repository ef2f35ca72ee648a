"""Error gallery: which test images are shown for each class, in which order, and the files written."""

from __future__ import annotations

import numpy as np
from PIL import Image

from mobiledx.evaluation.gallery import TILE_COLUMNS, gallery_file, select_tiles, tile_caption, write_gallery

CLASSES = ["mel", "nv", "bcc"]
#                 true  p(mel) p(nv) p(bcc)
SPLIT = np.array([[0, 0.10, 0.90, 0.00],   # 0 mel called nv: missed, p(mel) 0.10
                  [0, 0.30, 0.70, 0.00],   # 1 mel called nv: missed, p(mel) 0.30
                  [0, 0.05, 0.00, 0.95],   # 2 mel called bcc: missed, p(mel) 0.05 (most confident miss)
                  [0, 0.80, 0.20, 0.00],   # 3 mel correct
                  [0, 0.99, 0.01, 0.00],   # 4 mel correct, most confident
                  [1, 0.60, 0.40, 0.00],   # 5 nv called mel: false alarm for mel
                  [1, 0.95, 0.05, 0.00],   # 6 nv called mel: the most confident false alarm
                  [1, 0.00, 1.00, 0.00]])  # 7 nv correct


def split() -> tuple[np.ndarray, np.ndarray]:
    return SPLIT[:, 0].astype(int), SPLIT[:, 1:]


def test_tiles_are_the_most_confident_mistakes_then_correct_cases_per_class():
    y_true, probabilities = split()
    tiles = select_tiles(y_true, probabilities, CLASSES, errors=2, correct=1)
    assert list(tiles.columns) == TILE_COLUMNS
    mel = tiles[tiles["gallery_class"] == "mel"]
    assert mel[["kind", "position"]].values.tolist() == [
        ["false_negative", 2], ["false_negative", 0],  # lowest p(mel) first; 1 (0.30) is the third: left out
        ["false_positive", 6], ["false_positive", 5],  # highest p(mel) first
        ["correct", 4]]
    assert mel.iloc[0][["true_class", "predicted_class"]].tolist() == ["mel", "bcc"]
    assert mel.iloc[0]["p_true"] == 0.05 and mel.iloc[0]["p_predicted"] == 0.95
    nv = tiles[tiles["gallery_class"] == "nv"]
    assert nv[["kind", "position"]].values.tolist() == [
        ["false_negative", 6], ["false_negative", 5], ["false_positive", 0], ["false_positive", 1], ["correct", 7]]
    bcc = tiles[tiles["gallery_class"] == "bcc"]  # no bcc image; one false alarm
    assert bcc[["kind", "position"]].values.tolist() == [["false_positive", 2]]
    assert select_tiles(y_true, probabilities, CLASSES, errors=0, correct=0).empty


def test_file_names_keep_label_order_and_only_safe_characters():
    assert gallery_file(3, "mel") == "03_mel.png"
    assert gallery_file(12, "Basal cell/carcinoma?") == "12_Basal_cell_carcinoma_.png"


def test_one_png_per_class_with_a_column_per_tile_and_a_row_per_map(tmp_path):
    y_true, probabilities = split()
    probabilities = np.column_stack([probabilities, np.zeros(len(y_true))])  # a 4th class, never seen
    tiles = select_tiles(y_true, probabilities, CLASSES + ["vasc"], errors=1, correct=1)
    images = np.random.default_rng(0).integers(0, 255, (len(tiles), 32, 32, 3)).astype(np.uint8)
    maps = {"grad_cam": np.random.default_rng(1).random((len(tiles), 32, 32)).astype(np.float32)}
    files = write_gallery(tmp_path, "demo", CLASSES + ["vasc"], tiles, images, maps, {"grad_cam": "Grad-CAM"})
    assert [f.name for f in files] == ["00_mel.png", "01_nv.png", "02_bcc.png", "03_vasc.png"]
    sizes = {f.name: Image.open(f).size for f in files}
    assert sizes["00_mel.png"][0] > sizes["02_bcc.png"][0]  # 3 tiles vs 1 (the title sets a minimum width)
    assert 2 * sizes["03_vasc.png"][1] < min(sizes["00_mel.png"][1], sizes["02_bcc.png"][1])  # vasc: a message
    caption = tile_caption(next(tiles.itertuples()))
    assert caption == "missed\ntrue mel\nsaid bcc 95 %"

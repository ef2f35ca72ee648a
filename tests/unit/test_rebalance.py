import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mobiledx.models.augmentation import PRESETS
from mobiledx.params import ParamsError, RebalanceParams
from mobiledx.preparation.resampling import augmented_batches, balanced_class_weights, rebalance, training_rows
from tests.support import REPO_ROOT, emulated_cpus

HAM10000_COUNTS = {"akiec": 327, "bcc": 514, "bkl": 1099, "df": 115, "mel": 1113, "nv": 6705, "vasc": 142}
CLASSES = ["a", "b", "c"]


def test_balanced_weights_equal_the_known_ham10000_values():
    labels = pd.Series([c for c, n in HAM10000_COUNTS.items() for _ in range(n)])
    weights = balanced_class_weights(labels, list(HAM10000_COUNTS))
    expected = {"akiec": 4.375, "bcc": 2.783, "bkl": 1.302, "df": 12.441, "mel": 1.285, "nv": 0.213, "vasc": 10.075}
    assert weights == pytest.approx(expected, abs=5e-4)


def training_split() -> pd.DataFrame:
    labels = ["a"] * 12 + ["b"] * 5 + ["c"] * 2
    return pd.DataFrame({
        "image_id": [f"i{k}" for k in range(len(labels))],
        "label": labels,
        "group_id": [f"g{k // 2}" if label == "a" else f"g{k}" for k, label in enumerate(labels)],
    })


def method(name: str, **options) -> RebalanceParams:
    return RebalanceParams(method=name, **options)


def test_class_weight_keeps_every_image_once():
    index, weights, sources = rebalance(training_split(), CLASSES, method("class_weight"), seed=0)
    assert sorted(index["image_id"]) == sorted(training_split()["image_id"]) and len(sources) == 0
    assert weights["c"] == pytest.approx(19 / (3 * 2))
    totals = index["label"].map(weights).groupby(index["label"]).sum()
    assert totals.min() == pytest.approx(totals.max())  # the loss sees balanced classes


def test_over_and_under_sampling_even_the_classes_reproducibly():
    train = training_split()
    over, weights, _ = rebalance(train, CLASSES, method("oversample"), seed=3)
    assert over["label"].value_counts().to_dict() == {"a": 12, "b": 12, "c": 12}
    assert set(over["image_id"]) == set(train["image_id"]) and set(weights.values()) == {1.0}
    assert over.equals(rebalance(train, CLASSES, method("oversample"), seed=3)[0])
    under, _, _ = rebalance(train, CLASSES, method("undersample"), seed=3)
    assert under["label"].value_counts().to_dict() == {"a": 2, "b": 2, "c": 2}
    assert set(under["image_id"]) <= set(train["image_id"])


def test_train_fraction_keeps_whole_groups_per_class():
    train = training_split()
    index, _, _ = rebalance(train, CLASSES, method("none", train_fraction=0.5), seed=1)
    kept = train[train["image_id"].isin(index["image_id"])]
    assert kept.groupby("label")["group_id"].nunique().to_dict() == {"a": 3, "b": 2, "c": 1}  # round(0.5 n), >= 1
    assert set(kept["group_id"]) == set(train[train["group_id"].isin(kept["group_id"])]["group_id"])
    assert len(kept) == len(train[train["group_id"].isin(kept["group_id"])])  # groups are never cut
    assert index.equals(rebalance(train, CLASSES, method("none", train_fraction=0.5), seed=1)[0])


def test_offline_augmentation_grows_each_class_to_the_target():
    train = training_split()
    pixels = np.random.default_rng(0).integers(0, 256, (len(train), 16, 16, 3)).astype(np.uint8)
    config = method("augment", target_per_class=8, augmentation="paper004")
    index, weights, sources = rebalance(train, CLASSES, config, seed=5)
    originals = pixels[[int(i[1:]) for i in index["image_id"][index["source"] == "original"]]]
    batches = list(augmented_batches(originals, sources, config.augmentation, seed=5, batch_size=4))
    assert [len(b) for b in batches] == [4, 4, 1]  # never more than batch_size images at a time
    augmented = np.concatenate(batches)
    assert index["label"].value_counts().to_dict() == {"a": 12, "b": 8, "c": 8}
    new = index[index["source"] == "augmented"]
    assert len(new) == len(augmented) == 9 and augmented.dtype == np.uint8
    assert new["image_id"].tolist() == [f"augmented:{k}" for k in range(9)]
    source_labels = train.set_index("image_id").loc[new["source_image_id"], "label"].to_numpy()
    assert (source_labels == new["label"].to_numpy()).all()  # made from images of their own class
    assert not any(np.array_equal(image, pixels[int(s[1:])]) for image, s in zip(augmented, new["source_image_id"]))
    again = rebalance(train, CLASSES, config, seed=5)
    assert again[0].equals(index) and np.array_equal(again[2], sources)
    assert np.array_equal(np.concatenate(list(augmented_batches(originals, sources, "paper004", 5, 4))), augmented)
    rows, source_rows = training_rows(index, lambda ids: np.array([int(i[1:]) for i in ids]), original_count=100)
    assert rows[:19].tolist() == list(range(19)) and rows[19:].tolist() == list(range(100, 109))
    assert source_rows[19:].tolist() == [int(s[1:]) for s in new["source_image_id"]]


def test_bad_settings_are_refused():
    with pytest.raises(ParamsError, match="rebalance.method"):
        method("smote-ish")
    with pytest.raises(ParamsError, match="train_fraction"):
        method("none", train_fraction=0)
    with pytest.raises(ParamsError, match="target_per_class"):
        method("augment")
    with pytest.raises(ValueError, match=r"\['d'\]"):
        rebalance(training_split(), [*CLASSES, "d"], method("class_weight"), seed=0)


# Offline augmentation of smooth random images with every preset, hashed (run here and in a fresh
# interpreter on an emulated older CPU).
_AUGMENT_AND_HASH = """
import hashlib
import numpy as np
from PIL import Image
from mobiledx.models.augmentation import PRESETS
from mobiledx.preparation.resampling import augmented_batches
noise = np.random.default_rng(0).integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
images = np.stack([np.asarray(Image.fromarray(n).resize((48, 48), Image.Resampling.BICUBIC)) for n in noise])
digest = hashlib.md5()
for preset in (p for p in PRESETS if p != "none"):
    for batch in augmented_batches(images, np.arange(12).repeat(2), preset, seed=7, batch_size=16):
        digest.update(batch.tobytes())
print(digest.hexdigest())
"""


def test_offline_augmentation_gives_the_same_bytes_on_another_cpu():
    """Rebalance's new images are data: identical on an emulated older CPU with one TF thread."""
    def augmented_hash(env: dict[str, str]) -> str:
        done = subprocess.run([sys.executable, "-c", _AUGMENT_AND_HASH], cwd=REPO_ROOT, env={**os.environ, **env},
                              capture_output=True, text=True, timeout=300, check=True)
        return done.stdout.split()[-1]

    here = augmented_hash({})
    assert len(PRESETS) > 2 and len(here) == 32
    assert augmented_hash(emulated_cpus()["x86-64-v2"]) == here

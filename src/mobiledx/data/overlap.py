"""Images two datasets share: by ISIC id where both have one, and by content (perceptual hashes).

ISIC 2019 contains the HAM10000 images under the same ISIC ids, in other sizes; other collections re-share
photos under new names. A model trained on one and "externally validated" on the other is then partly
tested on its own training images. :func:`dataset_overlap` finds them from what ingest left (manifests and
image caches, read batch by batch), so ``mobiledx overlap A B`` answers before any model is trained.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mobiledx.data.cache import IngestedDataset
from mobiledx.data.near_duplicates import DEFAULT_MAX_DISTANCE, hash_distance, image_hashes, near_duplicate_pairs

ISIC_ID = re.compile(r"ISIC_\d{7}")
OVERLAP_COLUMNS = ["image_a", "image_b", "by", "distance", "split_a", "split_b", "label_a", "label_b"]


@dataclass
class Overlap:
    """What ``a`` and ``b`` share: one row per overlapping pair (:data:`OVERLAP_COLUMNS`; ``by``: ``isic_id``,
    ``content`` or ``isic_id+content``), and the sizes of both datasets."""

    a: str
    b: str
    n_a: int
    n_b: int
    pairs: pd.DataFrame

    def table(self) -> pd.DataFrame:
        """Counts per way of matching: pairs and distinct images of each dataset involved."""
        rows = []
        for label, mask in (("by ISIC id", self.pairs["by"].str.contains("isic_id")),
                            ("by content", self.pairs["by"].str.contains("content")),
                            ("either", pd.Series(True, index=self.pairs.index))):
            chosen = self.pairs[mask]
            rows.append({"match": label, "pairs": len(chosen),
                         f"images of {self.a}": chosen["image_a"].nunique(),
                         f"share of {self.a}": chosen["image_a"].nunique() / max(self.n_a, 1),
                         f"images of {self.b}": chosen["image_b"].nunique(),
                         f"share of {self.b}": chosen["image_b"].nunique() / max(self.n_b, 1)})
        return pd.DataFrame(rows)


def isic_id(image_id: str) -> str:
    """The ISIC id inside an image id (``ISIC_0024306``, ``ISIC_0024306_downsampled``), or ``""``."""
    found = ISIC_ID.search(image_id)
    return found.group(0) if found else ""


def _splits(data: IngestedDataset) -> pd.Series:
    return data.assignment.set_index("image_id")["split"] if len(data.assignment) else pd.Series(dtype=str)


def dataset_overlap(a: IngestedDataset, b: IngestedDataset, max_distance: int = DEFAULT_MAX_DISTANCE) -> Overlap:
    """Every pair of an image of ``a`` and one of ``b`` with the same ISIC id or near-identical content."""
    ids_a, ids_b = a.manifest["image_id"].astype(str).to_numpy(), b.manifest["image_id"].astype(str).to_numpy()
    isic_a, isic_b = pd.Series([isic_id(i) for i in ids_a]), pd.Series([isic_id(i) for i in ids_b])
    by_id = (pd.DataFrame({"row_a": np.arange(len(ids_a)), "isic": isic_a})
             .merge(pd.DataFrame({"row_b": np.arange(len(ids_b)), "isic": isic_b}), on="isic"))
    by_id = by_id[by_id["isic"] != ""]
    hashes = np.concatenate([image_hashes(a.images), image_hashes(b.images)])
    found = near_duplicate_pairs(hashes, max_distance)
    found = found[(found[:, 0] < len(ids_a)) & (found[:, 1] >= len(ids_a))]
    by_content = pd.DataFrame({"row_a": found[:, 0], "row_b": found[:, 1] - len(ids_a),
                               "distance": hash_distance(hashes, found)})
    pairs = by_id[["row_a", "row_b"]].assign(isic=True).merge(by_content.assign(content=True),
                                                              on=["row_a", "row_b"], how="outer")
    pairs["by"] = np.where(pairs["isic"].eq(True) & pairs["content"].eq(True), "isic_id+content",
                           np.where(pairs["isic"].eq(True), "isic_id", "content"))
    if pairs.empty:
        return Overlap(a.name, b.name, len(ids_a), len(ids_b), pd.DataFrame(columns=OVERLAP_COLUMNS))
    row_a, row_b = pairs["row_a"].to_numpy(int), pairs["row_b"].to_numpy(int)
    missing = pairs["distance"].isna().to_numpy()
    distance = pairs["distance"].to_numpy(dtype=float, copy=True)
    distance[missing] = hash_distance(hashes, np.stack([row_a[missing], row_b[missing] + len(ids_a)], axis=1))
    result = pd.DataFrame({
        "image_a": ids_a[row_a], "image_b": ids_b[row_b], "by": pairs["by"].to_numpy(),
        "distance": distance.astype(int),
        "split_a": _splits(a).reindex(ids_a[row_a]).fillna("").to_numpy(),
        "split_b": _splits(b).reindex(ids_b[row_b]).fillna("").to_numpy(),
        "label_a": a.manifest["label"].to_numpy()[row_a], "label_b": b.manifest["label"].to_numpy()[row_b],
    })
    return Overlap(a.name, b.name, len(ids_a), len(ids_b),
                   result.sort_values(["image_a", "image_b"]).reset_index(drop=True))


def load_for_overlap(name: str, root=".") -> IngestedDataset:
    """Dataset ``name`` as ingest left it (with its split when ``split`` has run), or a clear error."""
    from pathlib import Path

    from mobiledx.data.cache import MappedImages
    from mobiledx.data.manifest import read_manifest
    from mobiledx.errors import MobiledxError
    from mobiledx.io import read_json
    from mobiledx.paths import DatasetPaths

    paths = DatasetPaths(name, root=Path(root))
    if not paths.images.is_file() or not paths.manifest.is_file():
        raise MobiledxError(f"dataset {name!r} is not ingested ({paths.images} is missing). Fix: "
                            f"`dvc repro ingest@{name}` (and register it under datasets: in params.yaml)")
    assignment = (pd.read_csv(paths.assignment, dtype=str, keep_default_na=False) if paths.assignment.is_file()
                  else pd.DataFrame(columns=["image_id", "group_id", "label", "split"]))
    return IngestedDataset(name=name, info=read_json(paths.dataset_info), manifest=read_manifest(paths.manifest),
                           images=MappedImages(paths.images), assignment=assignment)


def markdown(overlap: Overlap, shown: int = 20) -> str:
    """The counts table and the first ``shown`` overlapping pairs, as Markdown."""
    from mobiledx.tables import markdown_table

    table = overlap.table()
    lines = [f"# Overlap of {overlap.a} ({overlap.n_a:,} images) and {overlap.b} ({overlap.n_b:,} images)", "",
             *markdown_table(list(table.columns), table.values.tolist(),
                             cell=lambda v: f"{v:.1%}" if isinstance(v, float) else str(v))]
    if len(overlap.pairs):
        lines += ["", f"Overlapping images ({min(shown, len(overlap.pairs))} of {len(overlap.pairs)}):", "",
                  *markdown_table(OVERLAP_COLUMNS, overlap.pairs.head(shown).values.tolist())]
    return "\n".join(lines) + "\n"

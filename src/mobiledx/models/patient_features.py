"""Patient metadata as model input (paper 004): age normalised on the training split, sex and site one-hot.

Encoding happens outside the graph, so the exported ``.tflite`` takes a plain float vector. The
encoder is fitted on training rows only and saved as JSON next to the model; evaluation, export and
``mobiledx predict`` reuse exactly that encoding.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class MetadataEncoder:
    """Age → (age - mean) / std with a missing-age flag (missing = the training mean); sex and site → one-hot
    over the training vocabulary (values unseen in training encode as all zeros)."""

    age_mean: float
    age_std: float
    sexes: list[str]
    sites: list[str]

    @classmethod
    def fit(cls, train: pd.DataFrame) -> MetadataEncoder:
        ages = train["age"].astype(float)
        known = ages.dropna()
        if known.empty:
            raise ValueError("no training image has an age: train.metadata needs age, sex and site columns")
        std = float(known.std(ddof=0))
        return cls(
            age_mean=float(known.mean()),
            age_std=std if std > 0 else 1.0,
            sexes=sorted(train["sex"].astype(str).unique()),
            sites=sorted(train["site"].astype(str).unique()),
        )

    @property
    def feature_names(self) -> list[str]:
        return ["age", "age_missing", *(f"sex={s}" for s in self.sexes), *(f"site={s}" for s in self.sites)]

    @property
    def size(self) -> int:
        return len(self.feature_names)

    def transform(self, rows: pd.DataFrame) -> np.ndarray:
        """(len(rows), size) float32 features for manifest-like rows with ``age, sex, site``."""
        ages = rows["age"].astype(float).to_numpy()
        missing = np.isnan(ages)
        age = np.where(missing, 0.0, (np.nan_to_num(ages, nan=self.age_mean) - self.age_mean) / self.age_std)
        sex = (rows["sex"].astype(str).to_numpy()[:, None] == np.array(self.sexes)[None, :]).astype(np.float32)
        site = (rows["site"].astype(str).to_numpy()[:, None] == np.array(self.sites)[None, :]).astype(np.float32)
        return np.concatenate([age[:, None], missing[:, None], sex, site], axis=1).astype(np.float32)

    def description(self) -> dict:
        """How the features are encoded, for the model card and the ``.tflite`` metadata."""
        return {
            "features": self.feature_names,
            "age": f"(age - {self.age_mean:.2f}) / {self.age_std:.2f}; unknown age = 0 with age_missing = 1",
            "sex": f"one-hot over {self.sexes}",
            "site": f"one-hot over {self.sites}",
        }

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def save_encoder(path: str | Path, encoder: MetadataEncoder | None) -> None:
    """Write the encoder as JSON (``null`` for a model without metadata input), atomically."""
    from mobiledx.io import write_text

    write_text(path, "null\n" if encoder is None else encoder.to_json())


def load_encoder(path: str | Path) -> MetadataEncoder | None:
    """The encoder saved next to a model, or ``None`` when the model has no metadata input."""
    values = json.loads(Path(path).read_text())
    return None if values is None else MetadataEncoder(**values)

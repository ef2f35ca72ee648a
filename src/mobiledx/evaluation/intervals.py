"""Percentile intervals of bootstrap statistics: the 95 % CIs of evaluate's metrics and of the operating point."""

from __future__ import annotations

import numpy as np


def percentile_intervals(statistics: dict[str, list[float]], level: float = 0.95) -> dict[str, dict[str, float | None]]:
    """``{name: {"low", "high"}}``: the central ``level`` percentile interval of each statistic's bootstrap values
    (``None`` bounds for a statistic that no resample defined)."""
    tail = (1.0 - level) / 2.0 * 100.0
    return {
        name: {"low": float(np.percentile(values, tail)), "high": float(np.percentile(values, 100.0 - tail))}
        if values
        else {"low": None, "high": None}
        for name, values in statistics.items()
    }

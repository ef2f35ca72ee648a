"""Repeats of one configuration: the runs that differ only in one "repeat key", grouped, with their spread.

Two studies repeat a configuration: k-fold cross-validation (``split.fold`` varies, :mod:`mobiledx.tracking.crossval`)
and a seed study (``seed`` varies, :mod:`mobiledx.tracking.seeds`). Both group the finished runs of a dataset
the same way: runs belong to one configuration when every parameter that defines the training is
equal, apart from the repeat key. The training-defining parameters are the ones the train stage logs
under ``lr``, ``seed``, ``image_size``, ``train.*``, ``rebalance.*`` and ``split.*``; what the data
happened to give (``n_train_samples``, ``classes`` ...) and anything else (e.g. ``demo.*``, the demo data
generator's settings, if a run logs them) is not. Leaving one key out keeps the other: seeds of different
folds are different configurations, and folds of different seeds too. Of several runs of one repeat
value (a re-run), the latest counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from mobiledx.tracking.model_registry import metric_value

SEED, FOLD = "seed", "split.fold"
CONFIG_KEYS = ("lr", "seed", "image_size")
CONFIG_PREFIXES = ("train.", "rebalance.", "split.")


def configuration(params: dict[str, str], leave_out: str) -> tuple[tuple[str, str], ...]:
    """The training-defining ``(key, value)`` pairs of a run's params, sorted, without ``leave_out``."""
    return tuple(sorted(
        (key, value) for key, value in params.items()
        if key != leave_out and (key in CONFIG_KEYS or key.startswith(CONFIG_PREFIXES))
    ))


@dataclass(frozen=True)
class Spread:
    """A metric over the repeats: count, mean, sample sd (ddof=1; NaN for one value), min and max."""

    n: int
    mean: float
    sd: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread | None:
        """The spread of ``values`` (None if there are none)."""
        array = np.asarray(list(values), float)
        if array.size == 0:
            return None
        sd = float(array.std(ddof=1)) if array.size > 1 else math.nan
        return cls(int(array.size), float(array.mean()), sd, float(array.min()), float(array.max()))

    def as_dict(self, prefix: str = "") -> dict[str, float | int | None]:
        """``{<prefix>n, <prefix>mean, <prefix>sd, <prefix>min, <prefix>max}`` (sd None for one value)."""
        sd = None if math.isnan(self.sd) else self.sd
        return {f"{prefix}n": self.n, f"{prefix}mean": self.mean, f"{prefix}sd": sd, f"{prefix}min": self.min,
                f"{prefix}max": self.max}

    def describe(self, digits: int = 3) -> str:
        """``0.812 ± 0.021 [0.790, 0.840]`` (``0.812 [0.812, 0.812]`` for one value)."""
        spread = "" if math.isnan(self.sd) else f" ± {self.sd:.{digits}f}"
        return f"{self.mean:.{digits}f}{spread} [{self.min:.{digits}f}, {self.max:.{digits}f}]"


def _repeat_order(value: str) -> tuple:
    """Numeric repeat values (seeds, folds) in numeric order, anything else after them, alphabetically."""
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


@dataclass
class RepeatGroup:
    """One configuration's runs, one (the latest) per repeat value, in repeat order."""

    repeat_key: str
    config: dict[str, str]  # the training-defining params, without the repeat key
    runs: dict[str, object] = field(default_factory=dict)  # repeat value -> run

    @property
    def repeats(self) -> list[str]:
        return list(self.runs)

    @property
    def run_ids(self) -> list[str]:
        return [run.info.run_id for run in self.runs.values()]

    @property
    def latest_start(self) -> int:
        return max(run.info.start_time for run in self.runs.values())

    def value(self, repeat: str, metric: str) -> float | None:
        return metric_value(self.runs[repeat], metric)

    def values(self, metric: str) -> list[float]:
        """The metric of each repeat that logged it (NaN counts as not logged), in repeat order."""
        return [v for repeat in self.runs if (v := self.value(repeat, metric)) is not None]

    def spread(self, metric: str) -> Spread | None:
        return Spread.of(self.values(metric))


def group_repeats(runs: Iterable, repeat_key: str, keep: Callable[[object], bool] | None = None) -> list[RepeatGroup]:
    """Group runs (MLflow ``Run`` objects) by configuration without ``repeat_key``; the latest run per repeat value.

    Runs without ``repeat_key`` among their params, or that ``keep`` rejects, are left out. Groups come
    newest first (by their latest run's start).
    """
    groups: dict[tuple, dict[str, object]] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time):  # a later run of a repeat value replaces it
        params = run.data.params
        if repeat_key not in params or (keep is not None and not keep(run)):
            continue
        groups.setdefault(configuration(params, repeat_key), {})[params[repeat_key]] = run
    found = [
        RepeatGroup(repeat_key, dict(key), {value: by_value[value] for value in sorted(by_value, key=_repeat_order)})
        for key, by_value in groups.items()
    ]
    return sorted(found, key=lambda group: group.latest_start, reverse=True)


def varying_params(groups: Iterable) -> list[str]:
    """The ``config`` params whose value differs between groups (a missing key counts as a value), sorted."""
    groups = list(groups)
    keys = {key for group in groups for key in group.config}
    return sorted(key for key in keys if len({group.config.get(key) for group in groups}) > 1)

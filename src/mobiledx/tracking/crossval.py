"""Cross-validation summaries: validation and test metrics of the k fold runs of one configuration as mean ± sd.

The validation balanced accuracy is what configurations are compared on; its spread over folds
stands next to the test figures, which are reported, not chosen on.

A k-fold study is ``dvc exp run --queue -S split.method=kfold -S split.fold=0,1,2 ...``: one MLflow
run per fold. Runs belong to the same configuration when every parameter that defines the
training (``lr``, ``seed``, ``image_size``, ``train.*``, ``rebalance.*``, ``split.*`` except
``split.fold``) is equal; the latest run of each fold counts (the grouping is :mod:`mobiledx.tracking.repeats`,
shared with seed studies).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mobiledx.evaluation.headline import run_metrics
from mobiledx.tables import markdown_table
from mobiledx.tracking.repeats import FOLD, Spread, group_repeats, varying_params

CV_METRICS = run_metrics(operating_point=False)


@dataclass
class FoldSummary:
    """One configuration's folds: per-fold values and mean ± sample sd of each metric."""

    config: dict[str, str]
    run_ids: list[str]  # in fold order
    values: dict[str, list[float]]  # metric -> per-fold values

    @property
    def complete(self) -> bool:
        return len(self.run_ids) == int(self.config["split.folds"])

    def mean_sd(self, metric: str) -> tuple[float, float]:
        """Mean and sample sd (ddof=1) over the folds; sd 0 for a single fold, NaN for none."""
        spread = Spread.of(self.values[metric])
        if spread is None:
            return math.nan, math.nan
        return spread.mean, spread.sd if spread.n > 1 else 0.0


def summarise_folds(runs, metrics: tuple[str, ...] = CV_METRICS) -> list[FoldSummary]:
    """Group k-fold runs (MLflow ``Run`` objects) by configuration; latest run per fold; newest group first."""
    def is_fold(run) -> bool:
        return run.data.params.get("split.method") == "kfold" and all(m in run.data.metrics for m in metrics)

    return [
        FoldSummary(config=group.config, run_ids=group.run_ids, values={m: group.values(m) for m in metrics})
        for group in group_repeats(runs, FOLD, keep=is_fold)
    ]


def markdown(dataset: str, summaries: list[FoldSummary], metrics: tuple[str, ...] = CV_METRICS) -> str:
    """A table: one row per configuration, ``mean ± sd (n folds)`` per metric, plus what differs between rows."""
    varying = varying_params(summaries)
    columns = ["folds", *varying, *metrics]
    rows = [
        [
            f"{len(summary.run_ids)}/{summary.config['split.folds']}",
            *(summary.config.get(k, "") for k in varying),
            *(f"{mean:.3f} ± {sd:.3f}" for mean, sd in (summary.mean_sd(m) for m in metrics)),
        ]
        for summary in summaries
    ]
    lines = [
        f"Cross-validation of {dataset}: mean ± sd over folds (latest run per fold). Compare configurations on "
        f"val_balanced_accuracy; the test columns are reported, not chosen on.",
        "",
        *markdown_table(columns, rows),
    ]
    return "\n".join(lines) + "\n"

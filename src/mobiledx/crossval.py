"""Cross-validation summaries: validation and test metrics of the k fold runs of one configuration as mean ± sd.

The validation balanced accuracy is what configurations are compared on; its spread over folds
stands next to the test figures, which are reported, not chosen on.

A k-fold study is ``dvc exp run --queue -S split.method=kfold -S split.fold=0,1,2 ...``: one MLflow
run per fold. Runs belong to the same configuration when every parameter that defines the
training (``lr``, ``seed``, ``image_size``, ``train.*``, ``rebalance.*``, ``split.*`` except
``split.fold``) is equal; the latest run of each fold counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mobiledx.tables import markdown_table

CV_METRICS = ("val_balanced_accuracy", "test_accuracy", "test_balanced_accuracy", "test_roc_auc_macro")
_CONFIG_KEYS = ("lr", "seed", "image_size")
_CONFIG_PREFIXES = ("train.", "rebalance.", "split.")


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
        values = np.asarray(self.values[metric], float)
        return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _configuration(params: dict[str, str]) -> tuple:
    return tuple(sorted(
        (key, value) for key, value in params.items()
        if key != "split.fold" and (key in _CONFIG_KEYS or key.startswith(_CONFIG_PREFIXES))
    ))


def summarise_folds(runs, metrics: tuple[str, ...] = CV_METRICS) -> list[FoldSummary]:
    """Group k-fold runs (MLflow ``Run`` objects) by configuration; latest run per fold; newest group first."""
    groups: dict[tuple, dict[int, object]] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time):
        params = run.data.params
        if params.get("split.method") != "kfold" or not all(m in run.data.metrics for m in metrics):
            continue
        groups.setdefault(_configuration(params), {})[int(params["split.fold"])] = run
    newest_first = sorted(groups.items(), key=lambda item: max(r.info.start_time for r in item[1].values()),
                          reverse=True)
    summaries = []
    for key, by_fold in newest_first:
        folds = [by_fold[fold] for fold in sorted(by_fold)]
        summaries.append(FoldSummary(
            config=dict(key),
            run_ids=[run.info.run_id for run in folds],
            values={m: [float(run.data.metrics[m]) for run in folds] for m in metrics},
        ))
    return summaries


def markdown(dataset: str, summaries: list[FoldSummary], metrics: tuple[str, ...] = CV_METRICS) -> str:
    """A table: one row per configuration, ``mean ± sd (n folds)`` per metric, plus what differs between rows."""
    varying = sorted({k for s in summaries for k in s.config if len({t.config.get(k) for t in summaries}) > 1})
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

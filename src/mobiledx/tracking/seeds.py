"""Seed studies: one configuration trained with several seeds, summarised as mean ± sd [min, max] over seeds.

A seed study is ``dvc exp run --queue -S seed=0,1,2,3,4 && dvc queue start``: one MLflow run per seed.
Runs are grouped by configuration as :mod:`mobiledx.tracking.repeats` defines it, leaving out ``seed``
(``split.fold`` stays part of the configuration); the latest run per seed counts. ``mobiledx seeds``
prints the table of :func:`markdown`; ``mobiledx compare|release --best METRIC --over-seeds`` rank
configurations by their mean METRIC over seeds with :func:`choose_over_seeds`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mobiledx.evaluation.headline import run_metrics
from mobiledx.paths import DEFAULT_VARIANT
from mobiledx.tables import markdown_table
from mobiledx.tracking import model_registry
from mobiledx.tracking.repeats import SEED, RepeatGroup, Spread, group_repeats, varying_params

MIN_SEEDS = 2
PRIMARY_METRIC = "val_balanced_accuracy"  # what configurations are compared on; every evaluated run logs it
# the headline figures, as the runs log them (evaluate: val_/test_*, test_op_*; export: the shipped variant's)
SEED_METRICS = (*run_metrics(), f"tflite_{DEFAULT_VARIANT}_agreement_with_keras")
SEED_STUDY_FIX = "dvc exp run --queue -S seed=0,1,2,3,4 && dvc queue start"


class SeedStudyError(model_registry.RegistryError):
    """No configuration of the dataset has runs of enough seeds (the message names the fix)."""


def seed_groups(runs, metric: str = PRIMARY_METRIC) -> list[RepeatGroup]:
    """The runs that logged ``metric``, grouped by configuration without ``seed``; newest group first."""
    return group_repeats(runs, SEED, keep=lambda run: model_registry.metric_value(run, metric) is not None)


def _no_study(dataset: str, groups: list[RepeatGroup], metric: str) -> SeedStudyError:
    found = (f"{len(groups)} configuration(s), each with one seed" if groups
             else f"no finished run with a '{SEED}' parameter that logged {metric}")
    return SeedStudyError(
        f"no configuration of {dataset} has runs of {MIN_SEEDS} or more seeds that logged {metric} ({found}). "
        f"Fix: repeat a configuration over seeds, e.g. {SEED_STUDY_FIX}"
    )


def seed_studies(dataset: str, runs, metric: str = PRIMARY_METRIC) -> tuple[list[RepeatGroup], int]:
    """The configurations with at least :data:`MIN_SEEDS` seeds, newest first, and how many had fewer.

    Raises :class:`SeedStudyError` (naming ``dvc exp run --queue -S seed=...``) when there is none.
    """
    groups = seed_groups(runs, metric)
    studies = [group for group in groups if len(group.runs) >= MIN_SEEDS]
    if not studies:
        raise _no_study(dataset, groups, metric)
    return studies, len(groups) - len(studies)


def _seeds_cell(group: RepeatGroup) -> str:
    return f"{len(group.runs)} ({', '.join(group.repeats)})"


def _metric_cell(group: RepeatGroup, metric: str) -> str:
    spread = group.spread(metric)
    if spread is None:
        return "–"
    return spread.describe() + ("" if spread.n == len(group.runs) else f" (n={spread.n})")


def reported_metrics(groups: list[RepeatGroup], metrics: tuple[str, ...] = SEED_METRICS) -> list[str]:
    """The ``metrics`` some run of ``groups`` logged (a dataset without an operating point has no test_op_*)."""
    return [m for m in metrics if any(group.values(m) for group in groups)]


def markdown(dataset: str, groups: list[RepeatGroup], metrics: tuple[str, ...] = SEED_METRICS) -> str:
    """One row per configuration: its seeds, the params that differ between rows, ``mean ± sd [min, max]`` per metric.

    A metric some seeds did not log is summarised over those that did, with ``(n=...)``; one no seed
    logged is ``–``; a metric no configuration has is left out.
    """
    shown = reported_metrics(groups, metrics)
    varying = varying_params(groups)
    rows = [[_seeds_cell(group), *(group.config.get(k, "") for k in varying),
             *(_metric_cell(group, m) for m in shown)] for group in groups]
    lines = [
        f"Seed spread of {dataset}: mean ± sd [min, max] over seeds (sample sd; latest run per seed; configurations "
        f"with {MIN_SEEDS} or more seeds). Compare configurations on a validation metric (`--best "
        f"{PRIMARY_METRIC} --over-seeds`); the test columns are reported, not chosen on.",
        "",
        *markdown_table(["seeds", *varying, *shown], rows,
                        right_aligned=[True, *([False] * len(varying)), *([True] * len(shown))]),
    ]
    return "\n".join(lines) + "\n"


def log_rows(dataset: str, groups: list[RepeatGroup], metrics: tuple[str, ...] = SEED_METRICS) -> list[dict]:
    """The table as rows for MLflow: runs, seeds, the varying params and ``<metric>_n/_mean/_sd/_min/_max``."""
    varying = varying_params(groups)
    empty = dict.fromkeys(("n", "mean", "sd", "min", "max"))
    rows = []
    for group in groups:
        row = {"dataset": dataset, "run_id": ",".join(group.run_ids), "seeds": ",".join(group.repeats),
               "n_seeds": len(group.runs), **{k: group.config.get(k) for k in varying}}
        for metric in metrics:
            spread = group.spread(metric)
            row.update(spread.as_dict(f"{metric}_") if spread else {f"{metric}_{k}": v for k, v in empty.items()})
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- ranking by the mean over seeds


def rank_configurations(groups: list[RepeatGroup], metric: str, *, minimize: bool = False
                        ) -> list[tuple[RepeatGroup, Spread]]:
    """Configurations with ``metric`` logged by at least :data:`MIN_SEEDS` seeds, best mean first.

    Ties keep the order of ``groups`` (newest configuration first).
    """
    scored = [(group, spread) for group in groups if (spread := group.spread(metric)) and spread.n >= MIN_SEEDS]
    return sorted(scored, key=lambda pair: pair[1].mean if minimize else -pair[1].mean)


def best_seed(group: RepeatGroup, metric: str, *, minimize: bool = False) -> str:
    """The seed whose run has the best ``metric`` in ``group`` (ties: the most recent run)."""
    scored = [(value, group.runs[seed].info.start_time, seed) for seed in group.repeats
              if (value := group.value(seed, metric)) is not None]
    if minimize:
        return min(scored, key=lambda item: (item[0], -item[1]))[2]
    return max(scored, key=lambda item: (item[0], item[1]))[2]


@dataclass
class SeedChoice:
    """The configuration with the best mean ``metric`` over its seeds, and the run of its best seed."""

    metric: str
    minimize: bool
    group: RepeatGroup
    spread: Spread
    seed: str
    candidates: int  # configurations ranked (those with enough seeds)

    @property
    def run(self):
        return self.group.runs[self.seed]

    @property
    def chosen_by(self) -> str:
        """e.g. ``best mean val_balanced_accuracy over 5 seeds (0.870 ± 0.020 [0.840, 0.900]) ...; run of seed 3``."""
        best = "lowest" if self.minimize else "best"
        return (f"{best} mean {self.metric} over {self.spread.n} seeds ({self.spread.describe()}) among "
                f"{self.candidates} configuration(s) with {MIN_SEEDS} or more seeds; run of seed {self.seed} "
                f"({self.metric} {self.group.value(self.seed, self.metric):.3f}, its configuration's best seed)")

    def record(self) -> dict:
        """What release.json records about the choice."""
        return {
            "chosen_by": self.chosen_by,
            "metric": self.metric,
            "minimize": self.minimize,
            **self.spread.as_dict(),
            "seed": self.seed,
            "runs": dict(zip(self.group.repeats, self.group.run_ids)),
            "values": {seed: self.group.value(seed, self.metric) for seed in self.group.repeats},
            "configuration": self.group.config,
            "configurations_ranked": self.candidates,
        }


def choose_over_seeds(dataset: str, metric: str, *, minimize: bool = False, mlflow_client=None) -> SeedChoice:
    """The configuration of ``dataset`` with the best mean ``metric`` over its seeds and, in it, the best seed's run.

    Only configurations whose runs of at least :data:`MIN_SEEDS` seeds logged ``metric`` compete, so one
    lucky seed cannot win for its configuration. Of the winner's seeds, the run with the best ``metric`` is
    shipped rather than the one closest to the mean: the seed is a choice made on the same validation
    metric, like ``--best`` among single runs, and leaves the test split untouched; shipping a model that
    validated worse on purpose buys nothing, since the seed table already reports the spread. (A test metric
    needs ``--select-on-test``, checked by the caller.)
    """
    mlflow_client = mlflow_client or model_registry.client()
    runs = model_registry.finished_runs(dataset, mlflow_client)
    if not any(model_registry.metric_value(run, metric) is not None for run in runs):
        model_registry.best_run(dataset, metric, minimize=minimize, mlflow_client=mlflow_client)  # raises with the fix
    groups = seed_groups(runs, metric)
    ranked = rank_configurations(groups, metric, minimize=minimize)
    if not ranked:
        raise _no_study(dataset, groups, metric)
    group, spread = ranked[0]
    return SeedChoice(metric, minimize, group, spread, best_seed(group, metric, minimize=minimize), len(ranked))


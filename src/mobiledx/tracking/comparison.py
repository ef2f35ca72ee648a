"""Cross-dataset comparison: one row per dataset (its latest run, or its best by a metric), in Markdown and MLflow."""

from __future__ import annotations

from typing import Any

from mobiledx.evaluation.headline import OPERATING_POINT_METRICS, SPLIT_METRICS
from mobiledx.tables import markdown_table
from mobiledx.tracking import mlflow_runs, model_registry, seeds

COMPARE_EXPERIMENT = "mobiledx-compare"

# column → metric names tried in order
COMPARE_COLUMNS: dict[str, tuple[str, ...]] = {
    **{f"{split} {label}": (f"{split}_{key}",) for split in ("val", "test") for key, label in SPLIT_METRICS.items()},
    **{f"test {label} at operating point": (f"test_op_{key}",) for key, label in OPERATING_POINT_METRICS.items()},
    "int8 size (MB)": ("tflite_int8_size_bytes",),
    "float32 size (MB)": ("tflite_float32_size_bytes",),
    "int8 latency 1 thread (ms)": ("tflite_int8_latency_ms_1_thread",),
    "int8 accuracy": ("tflite_int8_accuracy",),
    "int8 on-device accuracy": ("tflite_int8_on_device_accuracy",),
}


def _chosen_run(dataset: str, metric: str | None, minimize: bool, over_seeds: bool, mlflow_client):
    """``(run, extra columns)``: the dataset's latest run, its best by ``metric``, or with ``over_seeds`` the best
    seed's run of its configuration with the best mean ``metric`` over seeds (as ``release --over-seeds``)."""
    if not metric:
        return model_registry.latest_run(dataset, mlflow_client), {}
    if not over_seeds:
        run = model_registry.best_run(dataset, metric, minimize=minimize, mlflow_client=mlflow_client)
        return run, {metric: model_registry.metric_value(run, metric)}
    picked = seeds.choose_over_seeds(dataset, metric, minimize=minimize, mlflow_client=mlflow_client)
    spread = picked.spread
    return picked.run, {metric: model_registry.metric_value(picked.run, metric),
                        f"{metric} mean over seeds": spread.mean,
                        f"{metric} sd over seeds": spread.sd, "seeds": spread.n, "seed": picked.seed}


def comparison(
    metric: str | None = None, *, minimize: bool = False, over_seeds: bool = False, mlflow_client=None
) -> tuple[list[dict], list[str]]:
    """One row per dataset: its latest FINISHED run, or its best by ``metric``, or (``over_seeds``) the best seed's
    run of its configuration with the best mean ``metric`` over at least two seeds.

    Returns ``(rows, skipped)``: each row has ``dataset``, ``run_id`` and one value (float or
    ``None``) per :data:`COMPARE_COLUMNS` entry (with ``over_seeds``, also the mean and sd of
    ``metric`` over the configuration's seeds, their number and the seed shown); ``skipped`` names
    datasets without ``metric`` (or, with ``over_seeds``, without a configuration of two or more seeds).
    Raises :class:`RegistryError` if there are no runs, or if no dataset has what ``metric`` needs.
    """
    if over_seeds and not metric:
        raise ValueError("over_seeds ranks configurations by a metric: pass metric")
    mlflow_client = mlflow_client or model_registry.client()
    names = model_registry.datasets(mlflow_client)
    if not names:
        raise model_registry.RegistryError(
            f"no finished runs in experiment {model_registry.experiment_name()!r} ({mlflow_client.tracking_uri}). "
            "Fix: run the pipeline first (`dvc repro`)"
        )
    rows, skipped, errors = [], [], []
    for dataset in names:
        try:
            run, extra = _chosen_run(dataset, metric, minimize, over_seeds, mlflow_client)
        except model_registry.RegistryError as error:
            skipped.append(dataset)
            errors.append(str(error))
            continue
        row: dict[str, Any] = {"dataset": dataset, "run_id": run.info.run_id}
        for column, candidates in COMPARE_COLUMNS.items():
            row[column] = next((v for m in candidates if (v := model_registry.metric_value(run, m)) is not None), None)
        rows.append({**row, **extra})
    if not rows:
        lacking = f"a configuration of two or more seeds with metric {metric!r}" if over_seeds \
            else f"a run with metric {metric!r}"
        raise model_registry.RegistryError(errors[0] if len(errors) == 1 else f"no dataset has {lacking}: " + errors[0])
    return rows, skipped


def log_comparison(markdown: str, rows: list[dict], basis: str) -> str:
    """Log the comparison as a run of the experiment ``mobiledx-compare``; returns the run id.

    The run holds ``comparison.md`` (the table as printed) and ``comparison.json`` (an MLflow
    table, browsable in the UI's artifact view); tags record the basis and the compared runs.
    """
    import mlflow

    mlflow_client = model_registry.client()
    experiment = mlflow_client.get_experiment_by_name(COMPARE_EXPERIMENT)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        local = mlflow_client.tracking_uri.startswith("sqlite:")
        try:
            experiment_id = mlflow_client.create_experiment(
                COMPARE_EXPERIMENT, artifact_location=mlflow_runs.artifact_root() if local else None
            )
        except Exception:  # created concurrently
            experiment = mlflow_client.get_experiment_by_name(COMPARE_EXPERIMENT)
            if experiment is None:
                raise
            experiment_id = experiment.experiment_id
    tags = {
        "basis": basis,
        "datasets": ",".join(r["dataset"] for r in rows),
        **{f"run.{r['dataset']}": r["run_id"] for r in rows},
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"compare-{basis}", tags=tags) as run:
        mlflow.log_text(markdown, "comparison.md")
        table = {key: [r.get(key) for r in rows] for key in rows[0]}
        mlflow.log_table(data=table, artifact_file="comparison.json")
    return run.info.run_id


def _cell(column: str, value) -> str:
    if value is None:
        return "–"
    if isinstance(value, (str, int)):  # a seed, a count of seeds
        return str(value)
    if "(MB)" in column:
        return f"{value / 1e6:.2f}"
    if "(ms)" in column:
        return f"{value:.2f}"
    return f"{value:.3f}"


def comparison_markdown(rows: list[dict], basis: str) -> str:
    """The comparison as a Markdown table, headed by what was compared (``basis``)."""
    extra = [k for k in rows[0] if k not in ("dataset", "run_id", *COMPARE_COLUMNS)]
    columns = [*COMPARE_COLUMNS, *extra]
    table = markdown_table(
        ["dataset", "run id", *columns],
        [[row["dataset"], f"`{row['run_id']}`", *(_cell(c, row.get(c)) for c in columns)] for row in rows],
        right_aligned=[False, False, *([True] * len(columns))],
    )
    return "\n".join([f"Runs compared: {basis}.", "", *table]) + "\n"


def external_matrix(rows: list[dict], mlflow_client=None) -> str:
    """Train × test: each compared run's balanced accuracy on its own test split and on every dataset it was
    externally validated on (``external/<data>/balanced_accuracy``, with the images used), as Markdown."""
    mlflow_client = mlflow_client or model_registry.client()
    runs = {row["dataset"]: mlflow_client.get_run(row["run_id"]) for row in rows}
    targets = sorted({key.split("/")[1] for run in runs.values() for key in run.data.metrics
                      if key.startswith("external/") and key.endswith("/balanced_accuracy")})

    def cell(metrics: dict, prefix: str) -> str:
        value = metrics.get(f"{prefix}balanced_accuracy")
        images = metrics.get(f"{prefix}n_images")
        return "–" if value is None else f"{value:.3f}" + ("" if images is None else f" ({int(images)} images)")

    table = markdown_table(
        ["trained on \\ tested on", "own test split", *targets],
        [[name, cell(run.data.metrics, "test_"), *(cell(run.data.metrics, f"external/{t}/") for t in targets)]
         for name, run in runs.items()],
    )
    return "\n".join(["Balanced accuracy, trained on (rows) × tested on (columns); external columns leave out the "
                      "images shared with the model's training or validation images.", "", *table]) + "\n"

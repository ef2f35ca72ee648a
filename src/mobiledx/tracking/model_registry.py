"""Model registry: one registered model per dataset, one model version per training run's logged model.

The export stage logs the release bundle as an MLflow 3 logged model (``classifier``, a ``pyfunc``
running the ``.tflite`` with LiteRT; :mod:`mobiledx.tracking.mlflow_model`) and registers it here, as
``mlflow.register_model("models:/<model_id>", "<dataset>")`` would (without its console output)::

    MlflowClient().create_model_version("<dataset>", source="models:/<model_id>", run_id=..., model_id=...)

so ``mlflow.pyfunc.load_model("models:/<dataset>@champion")`` classifies images, and the UI's
run page and registry show the model with its linked metrics. Each version carries the SHA-256 of
every bundle file as tags (``sha256.model_int8.tflite``) that a release checks the downloaded file
against. The run's plain ``tflite/`` artifacts are the same files, for people who only want them.
Registry stages are deprecated since MLflow 2.9: the released model is marked with the alias
``champion``, set by ``mobiledx release`` or by hand in the MLflow UI. Everything here works on the
SQLite store that :mod:`mobiledx.tracking.mlflow_runs` configures, and on a tracking server.

User-facing failures (no runs, unknown metric, no champion, a run without a bundle) raise
:class:`RegistryError` with a message that names the fix.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

from mobiledx.errors import MobiledxError
from mobiledx.paths import BUNDLE_DIR, ENCODER_FILE, LABELS_FILE
from mobiledx.tracking import mlflow_runs

CHAMPION = "champion"
ENCODER_LOCATIONS = (f"{BUNDLE_DIR}/{ENCODER_FILE}", f"model/{ENCODER_FILE}")  # bundle first, then train's copy
KERAS_MODEL_ARTIFACT = "model/model.keras"  # logged by evaluate: the trained Keras model, for saliency maps
_VARIANT_FILE = re.compile(r"^model_(?P<variant>[A-Za-z0-9_]+)\.tflite$")
_PAGE = 1000


class RegistryError(MobiledxError):
    """A user-facing problem (nothing to release, unknown metric, no champion ...) with its fix."""


def registered_model_name(dataset: str) -> str:
    """The registered model holding ``dataset``'s versions: the dataset name itself."""
    _check_name(dataset)
    return dataset


def experiment_name() -> str:
    """The experiment the pipeline logs to (``$MLFLOW_EXPERIMENT_NAME`` overrides it, as in tracking)."""
    return os.environ.get("MLFLOW_EXPERIMENT_NAME", mlflow_runs.EXPERIMENT_NAME)


def client():
    """An ``MlflowClient`` on the project's store (``$MLFLOW_TRACKING_URI`` or ``<repo>/mlruns/mlflow.db``)."""
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow
    from mlflow import MlflowClient

    uri = mlflow_runs.tracking_uri()
    mlflow.set_tracking_uri(uri)  # artifact downloads resolve runs:/ URIs through the global URI
    return MlflowClient(tracking_uri=uri)


# --------------------------------------------------------------------------- finding runs


def _check_name(dataset: str) -> None:
    if not dataset or any(c in dataset for c in "'\"/:\\") or dataset != dataset.strip():
        raise RegistryError(f"invalid dataset name {dataset!r}: use the name from params.yaml (e.g. demo-skin)")


def _experiment_id(mlflow_client) -> str:
    name = experiment_name()
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is None:
        raise RegistryError(
            f"no MLflow experiment {name!r} in {mlflow_client.tracking_uri}. Fix: run the pipeline first "
            "(`dvc repro`), or point MLFLOW_TRACKING_URI at the store that holds your runs"
        )
    return experiment.experiment_id


def _search(mlflow_client, filter_string: str, order_by: list[str] | None = None) -> list:
    from mlflow.entities import ViewType

    experiment_id = _experiment_id(mlflow_client)
    runs, token = [], None
    while True:
        page = mlflow_client.search_runs(
            [experiment_id], filter_string=filter_string, run_view_type=ViewType.ACTIVE_ONLY,
            max_results=_PAGE, order_by=order_by or ["attributes.start_time DESC"], page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def finished_runs(dataset: str, mlflow_client=None) -> list:
    """FINISHED runs tagged ``dataset=<dataset>``, most recent first."""
    _check_name(dataset)
    mlflow_client = mlflow_client or client()
    return _search(mlflow_client, f"tags.dataset = '{dataset}' and attributes.status = 'FINISHED'")


def datasets(mlflow_client=None) -> list[str]:
    """Every dataset that has at least one FINISHED run, sorted."""
    mlflow_client = mlflow_client or client()
    runs = _search(mlflow_client, "attributes.status = 'FINISHED'")
    return sorted({r.data.tags["dataset"] for r in runs if r.data.tags.get("dataset")})


def _no_runs(dataset: str, mlflow_client) -> RegistryError:
    known = datasets(mlflow_client)
    hint = f" Datasets with finished runs: {', '.join(known)}." if known else ""
    return RegistryError(
        f"no finished MLflow run tagged dataset={dataset!r} in experiment {experiment_name()!r} "
        f"({mlflow_client.tracking_uri}).{hint} Fix: check the name, or train it first "
        f"(`dvc repro` builds every dataset in params.yaml)"
    )


def latest_run(dataset: str, mlflow_client=None):
    """The most recently started FINISHED run of ``dataset``."""
    mlflow_client = mlflow_client or client()
    runs = finished_runs(dataset, mlflow_client)
    if not runs:
        raise _no_runs(dataset, mlflow_client)
    return runs[0]


def metric_value(run, metric: str) -> float | None:
    value = run.data.metrics.get(metric)
    return None if value is None or math.isnan(value) else float(value)


def best_run(dataset: str, metric: str, *, minimize: bool = False, mlflow_client=None):
    """The FINISHED run of ``dataset`` with the highest ``metric`` (lowest with ``minimize``).

    Ties go to the most recent run. Runs that did not log the metric are ignored; if none did,
    the error lists the metrics that were logged and the closest names.
    """
    mlflow_client = mlflow_client or client()
    runs = finished_runs(dataset, mlflow_client)
    if not runs:
        raise _no_runs(dataset, mlflow_client)
    scored = [(v, r) for r in runs if (v := metric_value(r, metric)) is not None]
    if not scored:
        logged = sorted({name for r in runs for name in r.data.metrics})
        close = difflib.get_close_matches(metric, logged, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        shown = ", ".join(logged[:25]) + (" ..." if len(logged) > 25 else "")
        raise RegistryError(
            f"none of the {len(runs)} finished run(s) of {dataset!r} logged metric {metric!r}.{hint} "
            f"Logged metrics: {shown or '(none)'}"
        )
    # runs are most recent first: max()/min() keep the first of equal values
    pick = min if minimize else max
    return pick(scored, key=lambda pair: pair[0])[1]


def get_run(run_id: str, dataset: str | None = None, mlflow_client=None):
    """The run ``run_id``; with ``dataset``, also checks the run's ``dataset`` tag matches."""
    from mlflow.exceptions import MlflowException

    mlflow_client = mlflow_client or client()
    try:
        run = mlflow_client.get_run(run_id)
    except MlflowException as error:
        raise RegistryError(
            f"no MLflow run with id {run_id!r} in {mlflow_client.tracking_uri} ({error.message.splitlines()[0]}). "
            "Fix: copy the id from the MLflow UI or from data/models/<dataset>/run.json"
        ) from error
    tagged = run.data.tags.get("dataset")
    if dataset is not None and tagged != dataset:
        raise RegistryError(
            f"run {run_id} belongs to dataset {tagged!r}, not {dataset!r}. Fix: pass that run's dataset, "
            f"or pick a run of {dataset!r} (`--best METRIC`)"
        )
    return run


# --------------------------------------------------------------------------- registration


def bundle_files(run_id: str, mlflow_client=None) -> list[str]:
    """File names in the run's ``tflite/`` artifact folder."""
    mlflow_client = mlflow_client or client()
    return sorted(Path(f.path).name for f in mlflow_client.list_artifacts(run_id, BUNDLE_DIR) if not f.is_dir)


def bundle_variants(files: Iterable[str]) -> list[str]:
    """TFLite variants (``int8``, ``float32`` ...) present among bundle file names."""
    return sorted(m["variant"] for f in files if (m := _VARIANT_FILE.match(f)))


def _check_bundle(run_id: str, files: list[str]) -> None:
    if LABELS_FILE not in files or not bundle_variants(files):
        found = ", ".join(files) if files else "nothing"
        raise RegistryError(
            f"run {run_id} has no complete {BUNDLE_DIR}/ bundle (found: {found}; need {LABELS_FILE} and "
            "model_<variant>.tflite). Fix: run the export stage for it (`dvc repro`), or pick another run"
        )


def logged_model(run_id: str, mlflow_client=None):
    """The latest ``classifier`` logged model of run ``run_id`` (export logs one per export)."""
    from mobiledx.tracking.mlflow_model import MODEL_NAME

    mlflow_client = mlflow_client or client()
    run = get_run(run_id, mlflow_client=mlflow_client)
    models = mlflow_client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{MODEL_NAME}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}],
    )
    if not models:
        raise RegistryError(
            f"run {run_id} has no logged model '{MODEL_NAME}' (runs exported before mobiledx logged MLflow models "
            f"lack it). Fix: re-run its export stage (`dvc repro -f export@<dataset>`), or pick another run"
        )
    return models[0]


def _find_version(mlflow_client, name: str, run_id: str, model_id: str):
    versions = mlflow_client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    matching = sorted((v for v in versions if v.source == f"models:/{model_id}"), key=lambda v: int(v.version))
    return matching[0] if matching else None


def _ensure_registered_model(mlflow_client, name: str, dataset: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_registered_model(name)
        return
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    try:
        mlflow_client.create_registered_model(
            name, tags={"dataset": dataset, "project": "mobiledx"},
            description=(f"On-device (.tflite) classifiers trained on {dataset}. Each version is one training "
                         f"run's {BUNDLE_DIR}/ bundle (every quantization variant, labels.txt, model card); "
                         f"the alias '{CHAMPION}' marks the released one."),
        )
    except MlflowException as error:  # created concurrently (e.g. two queued experiments)
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def register_run(run_id: str, dataset: str | None = None, mlflow_client=None):
    """Register the run's logged model as a version of the model named after its dataset.

    Idempotent: a logged model already registered returns its existing version. ``dataset`` defaults
    to the run's ``dataset`` tag; if given it must match the tag. The version is tagged with the
    dataset, the variants and the SHA-256 of each bundle file. Returns the ``ModelVersion``.
    """
    mlflow_client = mlflow_client or client()
    run = get_run(run_id, dataset, mlflow_client)
    dataset = dataset or run.data.tags.get("dataset")
    if not dataset:
        raise RegistryError(f"run {run_id} has no 'dataset' tag; pass the dataset name explicitly")
    name = registered_model_name(dataset)
    files = bundle_files(run_id, mlflow_client)
    _check_bundle(run_id, files)
    model = logged_model(run_id, mlflow_client)
    _ensure_registered_model(mlflow_client, name, dataset)
    existing = _find_version(mlflow_client, name, run_id, model.model_id)
    if existing is not None:
        return existing
    hashes = {key: value for key, value in model.tags.items() if key.startswith("sha256.")}
    return mlflow_client.create_model_version(
        name, source=f"models:/{model.model_id}", run_id=run_id, model_id=model.model_id,
        tags={"dataset": dataset, "variants": ",".join(bundle_variants(files)), **hashes},
        description=f"run {run_id} ({run.info.run_name}), logged model {model.model_id}",
        await_creation_for=0,
    )


def set_champion(dataset: str, run_id: str, *, variant: str | None = None, version=None, mlflow_client=None):
    """Point the ``champion`` alias of ``dataset``'s model at ``version`` (default: ``run_id``'s, registered first).

    ``variant`` is recorded as the version tag ``release_variant`` (what ``mobiledx predict --dataset`` runs).
    Returns the ``ModelVersion`` as it is after the change.
    """
    mlflow_client = mlflow_client or client()
    version = version or register_run(run_id, dataset, mlflow_client)
    name = registered_model_name(dataset)
    if variant is not None:
        mlflow_client.set_model_version_tag(name, version.version, "release_variant", variant)
    mlflow_client.set_registered_model_alias(name, CHAMPION, version.version)
    return mlflow_client.get_model_version(name, version.version)


def model_version(dataset: str, *, alias: str = CHAMPION, version: str | int | None = None, mlflow_client=None):
    """A version of ``dataset``'s registered model, by number or (default) by alias."""
    from mlflow.exceptions import MlflowException

    mlflow_client = mlflow_client or client()
    name = registered_model_name(dataset)
    try:
        if version is not None:
            return mlflow_client.get_model_version(name, str(version))
        return mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise
        what = f"version {version}" if version is not None else f"version with alias {alias!r}"
        raise RegistryError(
            f"dataset {dataset!r} has no {what} in the registry of {mlflow_client.tracking_uri}. "
            f"Fix: mark a version '{alias}' in the MLflow UI's registry, or `mobiledx release {dataset} "
            f"--best val_balanced_accuracy` (or --run-id ID)"
        ) from error


def verify_files(version, folder: Path, names: Iterable[str]) -> None:
    """Check downloaded bundle files against the SHA-256 tags of their registered ``version``."""
    from mobiledx.io import sha256_file

    for name in names:
        expected = version.tags.get(f"sha256.{name}")
        if expected is None:
            raise RegistryError(f"version {version.version} of {version.name!r} records no SHA-256 of {name}. Fix: "
                                f"re-run the export stage of run {version.run_id} to register a complete version")
        actual = sha256_file(folder / name)
        if actual != expected:
            raise RegistryError(
                f"{name} of run {version.run_id} has SHA-256 {actual[:12]}... but version {version.version} of "
                f"{version.name!r} registered {expected[:12]}...: the artifact changed after registration. "
                f"Fix: re-run that run's export stage, or release another version"
            )


def download_bundle(
    dataset: str,
    dst: str | os.PathLike,
    *,
    alias: str = CHAMPION,
    version: str | int | None = None,
    files: Iterable[str],
    mlflow_client=None,
):
    """Download ``files`` of a registered version's bundle into ``dst``, each checked against its SHA-256 tag.

    The version is ``version`` if given, else the one with ``alias`` (default ``champion``).
    Returns ``(version, folder)``.
    """
    mlflow_client = mlflow_client or client()
    found = model_version(dataset, alias=alias, version=version, mlflow_client=mlflow_client)
    names = list(files)
    folder = download_run_files(found.run_id, names, dst, mlflow_client)
    verify_files(found, folder, names)
    return found, folder


def download_run_files(run_id: str, files: Iterable[str], dst: str | os.PathLike, mlflow_client=None) -> Path:
    """Download named files of a run's ``tflite/`` bundle under ``dst`` (checked to exist first).

    Returns the folder that holds them.
    """
    mlflow_client = mlflow_client or client()
    available = bundle_files(run_id, mlflow_client)
    _check_bundle(run_id, available)
    missing = [f for f in files if f not in available]
    if missing:
        fixes = []
        if any(_VARIANT_FILE.match(f) for f in missing):
            fixes.append(f"pick a variant it has ({', '.join(bundle_variants(available))})")
        if any(not _VARIANT_FILE.match(f) for f in missing):
            fixes.append("re-run its export stage (runs exported before model cards existed lack them)")
        raise RegistryError(
            f"run {run_id}'s {BUNDLE_DIR}/ bundle lacks {', '.join(missing)} (it has: {', '.join(available)}). "
            f"Fix: {', or '.join(fixes)}"
        )
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    folders = {Path(mlflow_client.download_artifacts(run_id, f"{BUNDLE_DIR}/{name}", str(dst))).parent
               for name in files}
    if len(folders) != 1:
        raise RuntimeError(f"artifacts of run {run_id} were downloaded into several folders: {sorted(folders)}")
    return folders.pop()


def download_encoder(run_id: str, dst: str | os.PathLike, mlflow_client=None) -> Path | None:
    """The run's ``metadata_encoder.json`` (from ``tflite/``, else the train stage's ``model/``), or None."""
    mlflow_client = mlflow_client or client()
    for location in ENCODER_LOCATIONS:
        folder = location.rsplit("/", 1)[0]
        if any(Path(f.path).name == ENCODER_FILE for f in mlflow_client.list_artifacts(run_id, folder)):
            return Path(mlflow_client.download_artifacts(run_id, location, str(dst)))
    return None


def download_keras_model(run_id: str, dst: str | os.PathLike, mlflow_client=None) -> Path:
    """The run's trained Keras model (``model/model.keras``, what saliency maps need: a ``.tflite`` has no
    gradients); a clear error when the run has none."""
    mlflow_client = mlflow_client or client()
    if not any(f.path == KERAS_MODEL_ARTIFACT for f in mlflow_client.list_artifacts(run_id, "model")):
        raise RegistryError(f"run {run_id} has no {KERAS_MODEL_ARTIFACT} (runs evaluated before saliency maps "
                            "existed lack it). Fix: re-run its evaluate stage (dvc repro), or pass --model FILE "
                            "with the model.keras it was exported from in the same folder")
    return Path(mlflow_client.download_artifacts(run_id, KERAS_MODEL_ARTIFACT, str(dst)))

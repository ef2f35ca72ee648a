"""Releasing a trained model: the chosen run's bundle written to ``release/<dataset>/``, its registered
version marked ``champion``.

``release/<dataset>/`` is what a mobile app ships: ``model.tflite`` (the chosen variant, always under
this name), ``labels.txt``, ``model_card.md``/``.json``, ``release.json`` (run, version, variant,
selection, SHA-256, metrics) and, for a model with a patient-metadata input, ``metadata_encoder.json``.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mobiledx import __version__
from mobiledx.errors import MobiledxError
from mobiledx.evaluation.headline import OPERATING_POINT_METRICS, run_metrics
from mobiledx.io import read_json
from mobiledx.paths import (
    BUNDLE_DIR,
    DEFAULT_VARIANT,
    ENCODER_FILE,
    LABELS_FILE,
    MODEL_CARD_FILES,
    RELEASE_MANIFEST,
    RELEASE_MODEL_FILE,
    variant_file,
)
from mobiledx.tracking import model_registry
from mobiledx.tracking.seeds import choose_over_seeds


class ReleaseError(MobiledxError):
    """The chosen bundle cannot be released as it is (the message names the fix)."""


def tflite_facts(path: Path, labels: list[str]) -> dict:
    """Load the model once with LiteRT: checks it runs and that labels.txt matches its output."""
    from mobiledx.tflite.conversion import TFLiteClassifier

    try:
        classifier = TFLiteClassifier(path)
    except Exception as error:  # noqa: BLE001 - a corrupt or unsupported flatbuffer
        raise ReleaseError(f"{path.name} does not load in LiteRT: {error}") from error
    outputs = int(classifier.output["shape"][-1])
    if outputs != len(labels):
        raise ReleaseError(
            f"{path.name} outputs {outputs} classes but labels.txt lists {len(labels)}: the bundle is inconsistent"
        )
    inputs = classifier.interpreter.get_input_details()
    return {
        "input_size": classifier.image_size,
        "input_dtype": str(classifier.input["dtype"].__name__),
        "inputs": [d["name"] for d in inputs],
        "output_dtype": str(classifier.output["dtype"].__name__),
        "metadata_input": has_metadata_input(classifier),
    }


def read_labels(path: Path) -> list[str]:
    labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not labels:
        raise ReleaseError(f"{path} is empty: expected one class name per line")
    return labels


def has_metadata_input(classifier) -> bool:
    return bool(getattr(classifier, "has_metadata", len(classifier.interpreter.get_input_details()) > 1))


@dataclass
class Release:
    """What :func:`release` wrote: the folder, the registered version and the manifest (``release.json``)."""

    folder: Path
    version: object
    manifest: dict
    with_encoder: bool


TEST_SELECTION_WARNING = ("selected on the test set: its test figures are optimistic (the test split chose the "
                          "model, so it no longer measures it without bias)")
RELEASE_METRICS = (*run_metrics(operating_point=False), "op_threshold",
                   *(f"test_op_{key}" for key in (*OPERATING_POINT_METRICS, "ppv", "npv")))


def check_selection_metric(metric: str | None, select_on_test: bool) -> None:
    """Choosing by a ``test_*`` metric needs ``select_on_test`` (else :class:`ReleaseError` naming the flag)."""
    if metric and metric.startswith("test_") and not select_on_test:
        raise ReleaseError(
            f"{metric} is a test-split metric: choosing a model by it makes its reported test figures optimistic. "
            f"Fix: choose on validation (e.g. --best {'val_' + metric.removeprefix('test_')}), or pass "
            f"--select-on-test to choose on the test split anyway (recorded in release.json and the model card)"
        )


@dataclass
class Choice:
    """The run chosen for release and how it was chosen."""

    run: object
    selection: str
    metric: str | None = None
    selected_on_test: bool = False
    version: object = None  # the registered version, when the choice was a version (the champion alias)
    over_seeds: dict | None = None  # with --over-seeds: the configuration's spread and the seed shipped


def _choose_best(dataset: str, best: str, *, minimize: bool, select_on_test: bool, over_seeds: bool,
                 mlflow_client) -> Choice:
    """The finished run with the best ``best``; with ``over_seeds``, the best seed's run of the configuration
    with the best mean ``best`` over its seeds (:func:`mobiledx.tracking.seeds.choose_over_seeds` says why
    that seed)."""
    check_selection_metric(best, select_on_test)
    on_test = best.startswith("test_")
    warning = f"; {TEST_SELECTION_WARNING}" if on_test else ""
    if over_seeds:
        picked = choose_over_seeds(dataset, best, minimize=minimize, mlflow_client=mlflow_client)
        return Choice(picked.run, picked.chosen_by + warning, best, on_test, over_seeds=picked.record())
    run = model_registry.best_run(dataset, best, minimize=minimize, mlflow_client=mlflow_client)
    return Choice(run, f"{'lowest' if minimize else 'highest'} {best} among finished runs{warning}", best, on_test)


def choose(dataset: str, *, run_id: str | None, best: str | None, minimize: bool, select_on_test: bool,
           mlflow_client, over_seeds: bool = False) -> Choice:
    """The run to release: ``run_id``, else the finished run with the best ``best`` (``over_seeds``: of the
    configuration with the best mean over seeds), else the champion version."""
    if run_id:
        run = model_registry.get_run(run_id, dataset, mlflow_client)
        if run.info.status != "FINISHED":
            raise ReleaseError(
                f"run {run_id} is {run.info.status}, not FINISHED: release a run whose pipeline "
                "completed (`--best METRIC` only considers finished runs)"
            )
        return Choice(run, "run id given")
    if best:
        return _choose_best(dataset, best, minimize=minimize, select_on_test=select_on_test, over_seeds=over_seeds,
                            mlflow_client=mlflow_client)
    version = model_registry.model_version(dataset, mlflow_client=mlflow_client)
    run = model_registry.get_run(version.run_id, dataset, mlflow_client)
    return Choice(run, f"version {version.version} carries the alias '{model_registry.CHAMPION}' (set in the MLflow UI "
                       f"or by an earlier release)", version=version)


def validated_on(run) -> dict[str, str]:
    """``{data: summary}`` of the run's external validations (its ``validated_on.<data>`` tags)."""
    return {key.removeprefix("validated_on."): value for key, value in sorted(run.data.tags.items())
            if key.startswith("validated_on.")}


def _amend_model_card(folder: Path, choice: Choice) -> None:
    """The released copy of the model card says how the model was chosen (a warning if on the test set) and,
    when it was externally validated (stage ``external``), on which other datasets and how it did."""
    from mobiledx.io import write_json, write_text

    note = (f"Selected on the TEST set ({choice.metric}): its test figures are optimistic." if choice.selected_on_test
            else f"Chosen for release: {choice.selection}.")
    external = validated_on(choice.run)
    card = read_json(folder / MODEL_CARD_FILES[1])
    write_json(folder / MODEL_CARD_FILES[1], {**card, "selection": note, "validated_on": external})
    title, _, rest = (folder / MODEL_CARD_FILES[0]).read_text(encoding="utf-8").partition("\n")
    validated = "".join(f"\n> - {data}: {summary}" for data, summary in external.items())
    validated = (f"\n> **Validated on:** other datasets (external validation):{validated}\n" if external
                 else "\n> **Validated on:** its own dataset's test split only (no external validation).\n")
    write_text(folder / MODEL_CARD_FILES[0], f"{title}\n\n> **Release selection.** {note}\n{validated}{rest}")


def _release_manifest(dataset: str, choice: Choice, version, variant: str, model_path: Path, labels: list[str],
                      facts: dict, card: dict) -> dict:
    """``release.json``: what was released, from which run and version, how it was chosen, its checksums and
    metrics (the headline set and the variant's on-device figures)."""
    from mobiledx.io import sha256_file

    run = choice.run
    return {
        "dataset": dataset,
        "registered_model": model_registry.registered_model_name(dataset),
        "version": int(version.version),
        "alias": model_registry.CHAMPION,
        "model_uri": f"models:/{model_registry.registered_model_name(dataset)}@{model_registry.CHAMPION}",
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "git_commit": run.data.tags.get("git_commit"),
        "variant": variant,
        "file": RELEASE_MODEL_FILE,
        "source_file": f"{BUNDLE_DIR}/{variant_file(variant)}",
        "sha256": sha256_file(model_path),
        "sha256_verified_against": f"version {version.version} of '{version.name}'",
        "size_bytes": model_path.stat().st_size,
        "selection": choice.selection,
        "metric": choice.metric,
        "metric_value": run.data.metrics.get(choice.metric) if choice.metric else None,
        "selected_on_test": choice.selected_on_test,
        **({"over_seeds": choice.over_seeds} if choice.over_seeds else {}),
        "operating_point": card.get("operating_point"),
        "validated_on": validated_on(run),
        "metrics": {m: run.data.metrics[m] for m in
                    [*RELEASE_METRICS, *sorted(k for k in run.data.metrics if k.startswith(f"tflite_{variant}_"))]
                    if m in run.data.metrics},
        "labels": labels,
        **facts,
        "released_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mobiledx_version": __version__,
    }


def release(
    dataset: str,
    *,
    run_id: str | None = None,
    best: str | None = None,
    minimize: bool = False,
    select_on_test: bool = False,
    over_seeds: bool = False,
    variant: str | None = None,
    output: str | Path = "release",
    mlflow_client=None,
) -> Release:
    """Release run ``run_id``, or the finished run with the best ``best`` metric (``over_seeds``: the best seed's
    run of the configuration with the best mean ``best`` over its seeds), or (neither given) the version
    carrying the ``champion`` alias, of ``dataset``: write ``<output>/<dataset>/`` atomically, each file checked
    against the registered version's SHA-256, and point the ``champion`` alias at that version."""
    from mobiledx.io import atomic_directory, write_json

    mlflow_client = mlflow_client or model_registry.client()
    choice = choose(dataset, run_id=run_id, best=best, minimize=minimize, select_on_test=select_on_test,
                    mlflow_client=mlflow_client, over_seeds=over_seeds)
    run = choice.run
    run_id = run.info.run_id
    variant = variant or (choice.version.tags.get("release_variant") if choice.version else None) or DEFAULT_VARIANT
    source_file = variant_file(variant)
    target = Path(output) / dataset
    with tempfile.TemporaryDirectory(prefix="mobiledx-release-") as scratch:
        shipped = [source_file, LABELS_FILE]
        bundle = model_registry.download_run_files(run_id, [*shipped, *MODEL_CARD_FILES], scratch, mlflow_client)
        version = choice.version or model_registry.register_run(run_id, dataset, mlflow_client)  # idempotent
        model_registry.verify_files(version, bundle, shipped)
        model_path = bundle / source_file
        labels = read_labels(bundle / LABELS_FILE)
        facts = tflite_facts(model_path, labels)
        encoder = None
        if facts["metadata_input"]:  # the app must encode age/sex/site exactly as in training
            encoder = model_registry.download_encoder(run_id, Path(scratch) / "encoder", mlflow_client)
            if encoder is None:
                raise ReleaseError(
                    f"{source_file} of run {run_id} has a metadata input but the run has no "
                    f"{ENCODER_FILE} (tflite/ or model/). Fix: re-run its train and export stages"
                )
        manifest = _release_manifest(dataset, choice, version, variant, model_path, labels, facts,
                                     read_json(bundle / MODEL_CARD_FILES[1]))
        with atomic_directory(target) as tmp:
            shutil.copyfile(model_path, tmp / RELEASE_MODEL_FILE)
            for name in (LABELS_FILE, *MODEL_CARD_FILES):
                shutil.copyfile(bundle / name, tmp / name)
            _amend_model_card(tmp, choice)
            if encoder is not None:
                shutil.copyfile(encoder, tmp / ENCODER_FILE)
            write_json(tmp / RELEASE_MANIFEST, manifest)
            # last step inside the block: if the alias cannot be set, the old release folder stays
            model_registry.set_champion(dataset, run_id, variant=variant, version=version, mlflow_client=mlflow_client)
    return Release(folder=target, version=version, manifest=manifest, with_encoder=encoder is not None)

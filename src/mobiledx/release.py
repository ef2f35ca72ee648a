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
from datetime import datetime, timezone
from pathlib import Path

from mobiledx import __version__, registry
from mobiledx.errors import MobiledxError
from mobiledx.paths import (
    BUNDLE_DIR,
    ENCODER_FILE,
    LABELS_FILE,
    MODEL_CARD_FILES,
    RELEASE_MANIFEST,
    RELEASE_MODEL_FILE,
    variant_file,
)


class ReleaseError(MobiledxError):
    """The chosen bundle cannot be released as it is (the message names the fix)."""


def tflite_facts(path: Path, labels: list[str]) -> dict:
    """Load the model once with LiteRT: checks it runs and that labels.txt matches its output."""
    from mobiledx.export import TFLiteClassifier

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


def release(
    dataset: str,
    *,
    run_id: str | None,
    best: str | None,
    minimize: bool,
    variant: str,
    output: str | Path,
    mlflow_client=None,
) -> Release:
    """Release run ``run_id`` (or the finished run with the best ``best`` metric) of ``dataset``: write
    ``<output>/<dataset>/`` atomically and point the ``champion`` alias at the run's registered version."""
    from mobiledx.io import atomic_directory, sha256_file, write_json

    mlflow_client = mlflow_client or registry.client()
    if run_id:
        run = registry.get_run(run_id, dataset, mlflow_client)
        if run.info.status != "FINISHED":
            raise ReleaseError(
                f"run {run_id} is {run.info.status}, not FINISHED: release a run whose pipeline "
                "completed (`--best METRIC` only considers finished runs)"
            )
    else:
        run = registry.best_run(dataset, best, minimize=minimize, mlflow_client=mlflow_client)
    run_id = run.info.run_id
    source_file = variant_file(variant)
    target = Path(output) / dataset
    with tempfile.TemporaryDirectory(prefix="mobiledx-release-") as scratch:
        bundle = registry.download_run_files(
            run_id, [source_file, LABELS_FILE, *MODEL_CARD_FILES], scratch, mlflow_client
        )
        model_path = bundle / source_file
        labels = read_labels(bundle / LABELS_FILE)
        facts = tflite_facts(model_path, labels)
        size = model_path.stat().st_size
        logged_size = run.data.metrics.get(f"tflite_{variant}_size_bytes")
        if logged_size is not None and int(logged_size) != size:
            raise ReleaseError(
                f"{source_file} of run {run_id} is {size} bytes but the run logged tflite_{variant}_size_bytes="
                f"{int(logged_size)}: the artifact is not the file that was evaluated. Fix: re-run its export stage"
            )
        encoder = None
        if facts["metadata_input"]:  # the app must encode age/sex/site exactly as in training
            encoder = registry.download_encoder(run_id, Path(scratch) / "encoder", mlflow_client)
            if encoder is None:
                raise ReleaseError(
                    f"{source_file} of run {run_id} has a metadata input but the run has no "
                    f"{ENCODER_FILE} (tflite/ or model/). Fix: re-run its train and export stages"
                )
        version = registry.register_run(run_id, dataset, mlflow_client)  # idempotent
        metric_names = ["test_accuracy", "test_balanced_accuracy", "test_macro_auc", "test_roc_auc_macro"]
        metric_names += [m for m in sorted(run.data.metrics) if m.startswith(f"tflite_{variant}_")]
        manifest = {
            "dataset": dataset,
            "registered_model": registry.registered_model_name(dataset),
            "version": int(version.version),
            "alias": registry.CHAMPION,
            "model_uri": f"models:/{registry.registered_model_name(dataset)}@{registry.CHAMPION}",
            "run_id": run_id,
            "run_name": run.info.run_name,
            "git_commit": run.data.tags.get("git_commit"),
            "variant": variant,
            "file": RELEASE_MODEL_FILE,
            "source_file": f"{BUNDLE_DIR}/{source_file}",
            "sha256": sha256_file(model_path),
            "size_bytes": size,
            "metric": best,
            "metric_value": run.data.metrics.get(best) if best else None,
            "selection": (
                f"{'lowest' if minimize else 'highest'} {best} among finished runs" if best else "run id given"
            ),
            "metrics": {m: run.data.metrics[m] for m in metric_names if m in run.data.metrics},
            "labels": labels,
            **facts,
            "released_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "mobiledx_version": __version__,
        }
        with atomic_directory(target) as tmp:
            shutil.copyfile(model_path, tmp / RELEASE_MODEL_FILE)
            for name in (LABELS_FILE, *MODEL_CARD_FILES):
                shutil.copyfile(bundle / name, tmp / name)
            if encoder is not None:
                shutil.copyfile(encoder, tmp / ENCODER_FILE)
            write_json(tmp / RELEASE_MANIFEST, manifest)
            # last step inside the block: if the alias cannot be set, the old release folder stays
            registry.set_champion(dataset, run_id, variant=variant, mlflow_client=mlflow_client)
    return Release(folder=target, version=version, manifest=manifest, with_encoder=encoder is not None)

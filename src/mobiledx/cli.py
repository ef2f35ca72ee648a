"""``mobiledx``: release a trained model, run it on images, compare datasets.

    mobiledx release DATASET [--run-id ID | --best METRIC [--over-seeds] [--select-on-test]] [--variant int8]
                     [--output release]
    mobiledx predict IMAGE... (--model FILE | --dataset NAME) [--top 3] [--age A --sex S --site S] [--explain DIR]
    mobiledx app RELEASE_DIR [--port 8000]
    mobiledx compare [--best METRIC [--over-seeds] [--select-on-test]] [--output FILE.md]
    mobiledx cv DATASET [--output FILE.md]
    mobiledx seeds DATASET [--output FILE.md]

Exit status: 0 success; 1 ``predict`` could not read some of the images (the others are still
predicted); 2 a usage or setup problem (no runs, unknown metric, no champion ...), reported as
one ``mobiledx: error: ...`` line on stderr that names the fix.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mobiledx import __version__
from mobiledx.errors import MobiledxError
from mobiledx.paths import DEFAULT_VARIANT, LABELS_FILE, MODEL_CARD_FILES, RELEASE_MODEL_FILE, variant_file
from mobiledx.release.publish import has_metadata_input, read_labels

EXIT_OK, EXIT_BAD_IMAGES, EXIT_ERROR = 0, 1, 2
DISCLAIMER = "research prototype, not a medical device: do not use for diagnosis"


class CliError(MobiledxError):
    """A user-facing error: printed as one line, exit status 2."""


def _error(message: str) -> None:
    print(f"mobiledx: error: {message}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"mobiledx: warning: {message}", file=sys.stderr)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _variant(text: str) -> str:
    if not text or not all(c.isalnum() or c == "_" for c in text):
        raise argparse.ArgumentTypeError(f"invalid variant {text!r} (e.g. int8, float16, dynamic_range, float32)")
    return text


# --------------------------------------------------------------------------- release


def cmd_release(args: argparse.Namespace) -> int:
    from mobiledx.release.publish import release

    done = release(args.dataset, run_id=args.run_id, best=args.best, minimize=args.minimize,
                   select_on_test=args.select_on_test, over_seeds=args.over_seeds, variant=args.variant,
                   output=args.output)
    manifest = done.manifest
    if manifest["selected_on_test"]:
        _warn(f"{args.best} is a test-split metric: the released model's test figures are optimistic "
              f"(recorded in release.json and the model card)")
    chosen = f"{args.best}={manifest['metric_value']:.4f}" if args.best else manifest["selection"]
    print(f"{args.dataset}: version {manifest['version']} of '{manifest['registered_model']}' (run "
          f"{manifest['run_id']}, {manifest['run_name']}; {chosen}) now carries the alias '{manifest['alias']}'")
    print(f"wrote {done.folder}/: {RELEASE_MODEL_FILE} ({manifest['variant']}, {manifest['size_bytes'] / 1e6:.2f} MB, "
          f"sha256 {manifest['sha256'][:12]}... verified against the registry), labels.txt, model_card.md, "
          f"model_card.json, release.json{', metadata_encoder.json' if done.with_encoder else ''}")
    if manifest.get("over_seeds"):
        print(f"chosen by: {manifest['over_seeds']['chosen_by']}")
    if manifest.get("operating_point"):
        print(f"operating point: {manifest['operating_point']['rule']}")
    return EXIT_OK


# --------------------------------------------------------------------------- predict


def _load_classifier(path: Path):
    from mobiledx.tflite.conversion import TFLiteClassifier

    try:
        return TFLiteClassifier(path)
    except Exception as error:  # noqa: BLE001 - not a flatbuffer, or inputs it cannot map
        raise CliError(f"cannot load {path} with LiteRT: {error}") from error


def _patient_metadata(args: argparse.Namespace, classifier, encoder_path: Path | None, model_name: str):
    """The (1, M) encoded metadata row for a model with a metadata input; None for an image-only model."""
    given = [f"--{k}" for k in ("age", "sex", "site") if getattr(args, k) is not None]
    if not has_metadata_input(classifier):
        if given:
            raise CliError(f"{model_name} takes no patient metadata: drop {' '.join(given)}")
        return None
    if encoder_path is None or not encoder_path.is_file():
        raise CliError(f"{model_name} has a metadata input but no metadata_encoder.json was found "
                       "(next to the model file, or in the run's tflite/ or model/ artifacts)")
    import pandas as pd

    from mobiledx.models.patient_features import load_encoder

    encoder = load_encoder(encoder_path)
    if encoder is None:
        raise CliError(f"{encoder_path} holds no encoder, but {model_name} has a metadata input")
    width = int(classifier.inputs["metadata"]["shape"][-1]) if hasattr(classifier, "inputs") else None
    if width is not None and width != encoder.size:
        raise CliError(f"{encoder_path} encodes {encoder.size} features but {model_name} expects {width}")
    if args.sex is None or args.site is None:
        raise CliError(f"{model_name} was trained with patient metadata: pass --sex ({'|'.join(encoder.sexes)}) "
                       f"and --site ({'|'.join(encoder.sites)}), and --age if known")
    for option, value, allowed in (("--sex", args.sex, encoder.sexes), ("--site", args.site, encoder.sites)):
        if value not in allowed:
            raise CliError(f"{option} {value!r} was never seen in training; choose one of: {', '.join(allowed)}")
    age = float("nan") if args.age is None else args.age
    return encoder.transform(pd.DataFrame([{"age": age, "sex": args.sex, "site": args.site}]))


def _operating_point(card_path: Path, labels: list[str]):
    """The model's operating point, from the ``model_card.json`` beside it (None: none, or no card)."""
    import json

    from mobiledx.evaluation.operating_point import OperatingPoint

    if not card_path.is_file():
        return None
    point = json.loads(card_path.read_text(encoding="utf-8")).get("operating_point")
    if not point:
        return None
    if point["class"] not in labels:
        raise CliError(f"{card_path} sets an operating point for {point['class']!r}, which labels.txt lacks")
    return OperatingPoint.from_report(point)


def _scores_note(card_path: Path) -> str:
    """What the printed percentages are, from the ``model_card.json`` beside the model: calibrated
    probabilities (with the temperature), the model's own softmax, or unknown (no card)."""
    import json

    if not card_path.is_file():
        return "scores: the model's outputs (no model_card.json beside it says whether they are calibrated)"
    calibration = json.loads(card_path.read_text(encoding="utf-8")).get("calibration") or {}
    if calibration.get("applied"):
        return (f"scores: calibrated probabilities (temperature {calibration['temperature']:.3f} fitted on the "
                f"validation split, inside the model)")
    return "scores: the model's own softmax outputs, NOT calibrated (read them as scores, not as probabilities)"


def _decision(point, probability: float) -> str:
    """``mel 41.2 % >= 23.1 %: refer`` or ``... < ...: below the referral threshold``."""
    if probability >= point.threshold:
        return f"{point.class_name} {100 * probability:.1f} % >= {100 * point.threshold:.1f} %: refer"
    return f"{point.class_name} {100 * probability:.1f} % < {100 * point.threshold:.1f} %: below the referral threshold"


def _age(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an age in years, got {text!r}") from None
    if not 0 <= value <= 120:
        raise argparse.ArgumentTypeError(f"age {value} is outside 0-120 years")
    return value


def _explainer(args: argparse.Namespace, model_path: Path, run_id: str | None, mlflow_client, scratch: str,
               labels: list[str]):
    """With ``--explain``: the saliency :class:`~mobiledx.models.saliency.Explainer` of the Keras model the
    ``.tflite`` was exported from (the run's, or ``model.keras`` beside ``--model``); else None."""
    if args.explain is None:
        return None
    if run_id is None:
        keras_path = model_path.parent / "model.keras"
        if not keras_path.is_file():
            raise CliError(f"--explain needs the trained Keras model (a .tflite has no gradients) and there is no "
                           f"model.keras next to {model_path}: copy data/models/<dataset>/model.keras there, or "
                           "use --dataset NAME (the run's own copy)")
    else:
        from mobiledx.tracking import model_registry

        keras_path = model_registry.download_keras_model(run_id, Path(scratch) / "keras", mlflow_client)
    from mobiledx.models.inference import load_model
    from mobiledx.models.saliency import Explainer

    try:
        model = load_model(keras_path)
    except Exception as error:  # noqa: BLE001 - not a Keras archive, or one this version cannot read
        raise CliError(f"cannot load {keras_path} with Keras: {' '.join(str(error).split())[:300]}") from error
    if int(model.outputs[0].shape[-1]) != len(labels):
        raise CliError(f"{keras_path} outputs {model.outputs[0].shape[-1]} classes but labels.txt lists "
                       f"{len(labels)}: it is not the model {model_path.name} was exported from")
    args.explain.mkdir(parents=True, exist_ok=True)
    return Explainer(model)


def _explain(explainer, folder: Path, image_path: str, pixels, metadata, labels: list[str], probabilities,
             written: set[str]) -> Path:
    """Write ``<folder>/<image stem>.png``: the image and where the model looked for its top class."""
    from mobiledx.evaluation.gallery import write_explanation
    from mobiledx.models.saliency import MAP_TITLES

    top = int(probabilities.argmax())
    maps = explainer.explain(pixels[None], [top], metadata)
    stem, count = Path(image_path).stem, 1
    while f"{stem}.png" in written:  # same file name from two folders
        count += 1
        stem = f"{Path(image_path).stem}-{count}"
    written.add(f"{stem}.png")
    path = folder / f"{stem}.png"
    write_explanation(path, pixels, {name: heat[0] for name, heat in maps.items()}, MAP_TITLES,
                      f"said {labels[top]} {100 * probabilities[top]:.0f} %", Path(image_path).name)
    return path


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from mobiledx.data.images import UnreadableImageError, load_image

    with tempfile.TemporaryDirectory(prefix="mobiledx-predict-") as scratch:
        if args.model:
            model_path = Path(args.model)
            if not model_path.is_file():
                raise CliError(f"model file {model_path} does not exist")
            labels_path = model_path.parent / "labels.txt"
            if not labels_path.is_file():
                raise CliError(f"no labels.txt next to {model_path}: put the bundle's labels.txt (one class per "
                               "line, model output order) in the same folder")
            encoder_path = model_path.parent / "metadata_encoder.json"
            origin = str(model_path)
            run_id, mlflow_client = None, None
        else:
            from mobiledx.tracking import model_registry

            mlflow_client = model_registry.client()
            version = model_registry.model_version(args.dataset, mlflow_client=mlflow_client)
            variant = args.variant or version.tags.get("release_variant") or DEFAULT_VARIANT
            name = variant_file(variant)
            _, folder = model_registry.download_bundle(args.dataset, scratch, version=version.version,
                                                 files=[name, LABELS_FILE], mlflow_client=mlflow_client)
            model_registry.download_run_files(version.run_id, [MODEL_CARD_FILES[1]], folder, mlflow_client)
            model_path, labels_path = folder / name, folder / LABELS_FILE
            encoder_path, run_id = None, version.run_id
            origin = f"models:/{model_registry.registered_model_name(args.dataset)}@{model_registry.CHAMPION} " \
                     f"(version {version.version}, run {version.run_id}, {variant})"
        labels = read_labels(labels_path)
        classifier = _load_classifier(model_path)
        outputs = int(classifier.output["shape"][-1])
        if outputs != len(labels):
            raise CliError(f"{model_path.name} outputs {outputs} classes but {labels_path} lists {len(labels)}")
        if run_id is not None and has_metadata_input(classifier):
            encoder_path = model_registry.download_encoder(run_id, Path(scratch) / "encoder", mlflow_client)
        metadata = _patient_metadata(args, classifier, encoder_path, model_path.name)
        operating = _operating_point(model_path.parent / MODEL_CARD_FILES[1], labels)
        scores_note = _scores_note(model_path.parent / MODEL_CARD_FILES[1])
        explainer = _explainer(args, model_path, run_id, mlflow_client, scratch, labels)

    print(f"model: {origin} ({DISCLAIMER})", file=sys.stderr)
    print(scores_note, file=sys.stderr)
    top = min(args.top, len(labels))
    failures = 0
    written: set[str] = set()
    for image_path in args.images:
        try:
            pixels = load_image(image_path, classifier.image_size)
        except UnreadableImageError as error:
            failures += 1
            reason = str(error)
            if "cannot identify image file" in reason:  # PIL names its in-memory buffer, not the file
                reason = "cannot decode image: not an image format PIL recognises, or corrupt"
            _error(f"{image_path}: {reason}")
            continue
        except OSError as error:  # missing, a directory, no permission
            failures += 1
            _error(f"{image_path}: {error.strerror or error}")
            continue
        if metadata is None:
            probabilities = classifier.predict(pixels[None])[0]
        else:
            probabilities = classifier.predict(pixels[None], metadata)[0]
        print(image_path)
        for rank, index in enumerate(np.argsort(-probabilities, kind="stable")[:top], start=1):
            print(f"  {rank}. {labels[index]:<{max(len(x) for x in labels)}}  {100.0 * probabilities[index]:5.1f} %")
        if operating is not None:
            print("  " + _decision(operating, float(probabilities[labels.index(operating.class_name)])))
        if explainer is not None:
            path = _explain(explainer, args.explain, image_path, pixels, metadata, labels, probabilities, written)
            print(f"  explained: {path}")
    if failures:
        _error(f"{failures} of {len(args.images)} image(s) could not be read")
        return EXIT_BAD_IMAGES
    return EXIT_OK


# --------------------------------------------------------------------------- compare


def cmd_compare(args: argparse.Namespace) -> int:
    from mobiledx.io import write_text
    from mobiledx.release.publish import TEST_SELECTION_WARNING, check_selection_metric
    from mobiledx.tracking import comparison, seeds

    check_selection_metric(args.best, args.select_on_test)
    rows, skipped = comparison.comparison(args.best, minimize=args.minimize, over_seeds=args.over_seeds)
    best = "lowest" if args.minimize else "highest"
    if args.over_seeds:
        basis = (f"per dataset, the configuration with the {best} mean {args.best} over its seeds (only "
                 f"configurations with {seeds.MIN_SEEDS} or more seeds ranked), shown by its best seed's run")
    elif args.best:
        basis = f"best run per dataset by {best} {args.best}"
    else:
        basis = "latest finished run per dataset"
    if args.best and args.best.startswith("test_"):
        basis += f"; {TEST_SELECTION_WARNING}"
        _warn(f"{args.best} is a test-split metric: the chosen runs' test figures are optimistic")
    markdown = comparison.comparison_markdown(rows, basis)
    if args.external:
        markdown += "\n" + comparison.external_matrix(rows)
    print(markdown, end="")
    lacking = (f"no configuration with {seeds.MIN_SEEDS} or more seeds that logged {args.best} (run a seed study: "
               f"{seeds.SEED_STUDY_FIX})" if args.over_seeds else f"none of its runs logged {args.best}")
    for dataset in skipped:
        print(f"mobiledx: note: {dataset} left out: {lacking}", file=sys.stderr)
    if args.output:
        write_text(args.output, markdown)
        print(f"wrote {args.output}", file=sys.stderr)
    if not args.no_log:
        tag = f"best-mean-{args.best}-over-seeds" if args.over_seeds else f"best-{args.best}" if args.best else "latest"
        run_id = comparison.log_comparison(markdown, rows, tag)
        print(f"logged to MLflow experiment '{comparison.COMPARE_EXPERIMENT}', run {run_id}", file=sys.stderr)
    return EXIT_OK


def cmd_cv(args: argparse.Namespace) -> int:
    from mobiledx.io import write_text
    from mobiledx.tracking import comparison, crossval, model_registry

    summaries = crossval.summarise_folds(model_registry.finished_runs(args.dataset))
    if not summaries:
        raise CliError(f"no finished k-fold runs of {args.dataset} with test metrics. Fix: run the folds, e.g. "
                       f"dvc exp run --queue -S split.method=kfold -S split.fold=0,1,2 && dvc queue start")
    table = crossval.markdown(args.dataset, summaries)
    print(table, end="")
    if args.output:
        write_text(args.output, table)
    if not args.no_log:
        rows = [{"dataset": args.dataset, "run_id": ",".join(s.run_ids), "folds": len(s.run_ids),
                 **{f"{m}_{stat}": v for m in crossval.CV_METRICS for stat, v in zip(("mean", "sd"), s.mean_sd(m))}}
                for s in summaries]
        run_id = comparison.log_comparison(table, rows, f"cv-{args.dataset}")
        print(f"logged to MLflow experiment '{comparison.COMPARE_EXPERIMENT}', run {run_id}", file=sys.stderr)
    return EXIT_OK


def cmd_seeds(args: argparse.Namespace) -> int:
    from mobiledx.io import write_text
    from mobiledx.tracking import comparison, model_registry, seeds

    studies, singles = seeds.seed_studies(args.dataset, model_registry.finished_runs(args.dataset))
    table = seeds.markdown(args.dataset, studies)
    print(table, end="")
    if singles:
        print(f"mobiledx: note: {singles} configuration(s) with a single seed left out", file=sys.stderr)
    if args.output:
        write_text(args.output, table)
        print(f"wrote {args.output}", file=sys.stderr)
    if not args.no_log:
        run_id = comparison.log_comparison(table, seeds.log_rows(args.dataset, studies), f"seeds-{args.dataset}")
        print(f"logged to MLflow experiment '{comparison.COMPARE_EXPERIMENT}', run {run_id}", file=sys.stderr)
    return EXIT_OK


def cmd_overlap(args: argparse.Namespace) -> int:
    from mobiledx.data.overlap import dataset_overlap, load_for_overlap, markdown
    from mobiledx.io import write_csv

    overlap = dataset_overlap(load_for_overlap(args.a), load_for_overlap(args.b), max_distance=args.max_distance)
    print(markdown(overlap, shown=args.show), end="")
    if args.output:
        write_csv(args.output, overlap.pairs)
        print(f"wrote every overlapping pair to {args.output}", file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------- app


def cmd_app(args: argparse.Namespace) -> int:
    from mobiledx.release import webapp

    server = webapp.make_server(args.release_dir, args.port)
    print(f"{webapp.url(server)}  (the page of {Path(args.release_dir).resolve()}; Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how the server is meant to stop
    finally:
        server.server_close()
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def _summary_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of the repeat summaries (``cv``, ``seeds``): the dataset, a file for the table, no MLflow."""
    parser.add_argument("dataset", help="dataset name as in params.yaml")
    parser.add_argument("--output", metavar="FILE.md", help="also write the table to this file")
    parser.add_argument("--no-log", action="store_true", help="do not log the table to MLflow")


def _add_release(sub) -> None:
    release = sub.add_parser(
        "release", help="write the chosen model to release/<dataset>/ and make it the dataset's 'champion'",
        description="Choose a model of DATASET: with no option, the registered version carrying the alias "
                    "'champion' (set it in the MLflow UI's registry); --best METRIC, the finished run with the best "
                    "validation METRIC (with --over-seeds, the best seed's run of the configuration with the best "
                    "mean METRIC over its seeds); --run-id, that run. Point the alias 'champion' at its version and "
                    "write DIR/<dataset>/ (DIR: --output) (replaced atomically, every file checked against the SHA-256 "
                    "the registry recorded): model.tflite (the chosen variant, always under this name so an app never "
                    "changes its file name; release.json records which variant it is), labels.txt, "
                    "model_card.md, model_card.json, release.json (run id, model version, variant, how it was "
                    "chosen, sha256 and size of model.tflite, validation and test metrics, operating point) and, "
                    "for a model with a "
                    "patient-metadata input, metadata_encoder.json.",
    )
    release.add_argument("dataset", help="dataset name, as in params.yaml and the runs' 'dataset' tag")
    choice = release.add_mutually_exclusive_group()
    choice.add_argument("--run-id", metavar="ID", help="release this MLflow run")
    choice.add_argument("--best", metavar="METRIC",
                        help="release the finished run with the highest METRIC, a validation metric such as "
                             "val_balanced_accuracy (a test_* metric needs --select-on-test)")
    release.add_argument("--minimize", action="store_true",
                         help="with --best: lower is better (e.g. val_expected_calibration_error)")
    release.add_argument("--over-seeds", action="store_true",
                         help="with --best: rank configurations by their mean METRIC over seeds (only those with "
                              "2 or more seeds, see `mobiledx seeds`) and release the best seed's run of the best "
                              "one; release.json records the mean ± sd and the seed")
    release.add_argument("--select-on-test", action="store_true",
                         help="allow --best test_*: choosing on the test split makes its test figures optimistic; "
                              "recorded in release.json and the model card")
    release.add_argument("--variant", type=_variant, default=None,
                         help=f"which model_<variant>.tflite of the bundle to ship (default: the version's released "
                              f"variant, else {DEFAULT_VARIANT}; float32, float16, dynamic_range, int8)")
    release.add_argument("--output", default="release", metavar="DIR",
                         help="folder receiving <dataset>/ (default: %(default)s)")
    release.set_defaults(handler=cmd_release)



def _add_predict(sub) -> None:
    predict = sub.add_parser(
        "predict", help="classify images with a .tflite model and print the top classes",
        description="Run a .tflite classifier on image files (any format PIL reads; EXIF orientation applied, "
                    "resized to the model's input size exactly as in training) and print, per image, the top "
                    "classes with their probability and, for a model with an operating point (model_card.json "
                    "beside it), whether the image reaches its referral threshold. Unreadable images are reported "
                    "on stderr, the others are still predicted, and the exit status is then 1. With --model, "
                    "labels.txt (and, for a model with a patient-metadata input, metadata_encoder.json) must be "
                    f"next to the file, as in a release folder. Output is a {DISCLAIMER}.",
    )
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="FILE", help="a .tflite file; labels.txt must be in the same folder")
    source.add_argument("--dataset", metavar="NAME",
                        help="use the 'champion' version of this dataset's registered model (see `release`)")
    predict.add_argument("--variant", type=_variant, default=None,
                         help="with --dataset: variant to run (default: the one released, else int8)")
    patient = predict.add_argument_group(
        "patient metadata", "only for models trained with a metadata input (age, sex, site: paper 004); "
        "applied to every image given, as for one patient's photos")
    patient.add_argument("--age", type=_age, help="age in years (omit if unknown)")
    patient.add_argument("--sex", help="as spelled in the training metadata, e.g. male, female, unknown")
    patient.add_argument("--site", help="anatomical site as in the training metadata, e.g. back, face")
    predict.add_argument("--top", type=_positive_int, default=3, metavar="K",
                         help="classes shown per image (default: %(default)s)")
    predict.add_argument("--explain", type=Path, metavar="DIR",
                         help="also write, per image, DIR/<name>.png: the image as the model saw it and where it "
                              "looked for its top class (Grad-CAM; plus the attention map of a soft_attention "
                              "model). Needs the Keras model: the run's with --dataset, model.keras beside --model")
    predict.set_defaults(handler=cmd_predict)



def _add_compare(sub) -> None:
    compare = sub.add_parser(
        "compare", help="one Markdown table row per dataset, logged to MLflow",
        description="Compare datasets: for each dataset with finished runs, its latest run (or with --best, its "
                    "best run by METRIC) with validation and test accuracy, balanced accuracy and macro ROC-AUC, "
                    "sensitivity and specificity at the operating point, int8 and float32 "
                    "size, int8 latency (1 thread) and int8 accuracy. Prints Markdown, optionally writes it to "
                    "--output, and logs it as a run of the MLflow experiment 'mobiledx-compare' "
                    "(comparison.md and the table comparison.json).",
    )
    compare.add_argument("--best", metavar="METRIC", help="per dataset, the run with the highest METRIC, a "
                         "validation metric such as val_balanced_accuracy (a test_* metric needs --select-on-test)")
    compare.add_argument("--minimize", action="store_true", help="with --best: lower is better")
    compare.add_argument("--over-seeds", action="store_true",
                         help="with --best: per dataset, the configuration with the best mean METRIC over its seeds "
                              "(only those with 2 or more seeds), shown by its best seed's run, with the mean and sd")
    compare.add_argument("--select-on-test", action="store_true",
                         help="allow --best test_* (the chosen runs' test figures are then optimistic)")
    compare.add_argument("--external", action="store_true",
                         help="also print the train x test matrix: each run on its own test split and on the "
                              "datasets it was externally validated on (external: in params.yaml)")
    compare.add_argument("--output", metavar="FILE.md", help="also write the table to this file")
    compare.add_argument("--no-log", action="store_true", help="do not log the comparison to MLflow")
    compare.set_defaults(handler=cmd_compare)



def _add_cv(sub) -> None:
    cv = sub.add_parser(
        "cv", help="k-fold cross-validation: validation and test metrics as mean ± sd over folds",
        description="Group the finished split.method=kfold runs of DATASET by configuration (every train, "
                    "rebalance and split parameter except split.fold), take the latest run per fold and print the "
                    "headline metrics (accuracy, balanced accuracy, macro ROC-AUC) on validation (what "
                    "configurations are compared on) and on test as mean ± sd over the folds; logged to the MLflow "
                    "experiment 'mobiledx-compare'.",
    )
    _summary_arguments(cv)
    cv.set_defaults(handler=cmd_cv)



def _add_seeds(sub) -> None:
    seed = sub.add_parser(
        "seeds", help="seed spread: validation and test metrics as mean ± sd [min, max] over seeds",
        description="Group the finished runs of DATASET by configuration (every lr, image_size, train, rebalance "
                    "and split parameter; all but seed), take the latest run per seed and print, for each "
                    "configuration with 2 or more seeds, the validation and test accuracy, balanced accuracy and "
                    "macro ROC-AUC, "
                    "the test sensitivity and specificity at the operating point and the int8 model's agreement "
                    "with Keras as mean ± sd [min, max] over the seeds (sample sd; blank where not logged); "
                    "logged to the MLflow experiment 'mobiledx-compare'. Make the runs with "
                    "`dvc exp run --queue -S seed=0,1,2,3,4 && dvc queue start`.",
    )
    _summary_arguments(seed)
    seed.set_defaults(handler=cmd_seeds)



def _add_overlap(sub) -> None:
    overlap = sub.add_parser(
        "overlap", help="images two ingested datasets share: by ISIC id and by content",
        description="Compare two ingested datasets (dvc repro ingest@A ingest@B): images with the same ISIC id, "
                    "and images whose perceptual hashes differ by at most --max-distance bits (resized, "
                    "re-encoded or slightly cropped copies). Prints the counts and the first pairs, with each "
                    "image's split and label; --output writes every pair.",
    )
    overlap.add_argument("a", help="dataset name as in params.yaml")
    overlap.add_argument("b", help="the other dataset")
    overlap.add_argument("--max-distance", type=int, default=16, help="hash distance threshold (default: 16)")
    overlap.add_argument("--show", type=int, default=20, help="pairs printed (default: 20)")
    overlap.add_argument("--output", metavar="FILE.csv", help="write every overlapping pair to this file")
    overlap.set_defaults(handler=cmd_overlap)



def _add_app(sub) -> None:
    app = sub.add_parser(
        "app", help="serve a release's page on 127.0.0.1: classify photos in the browser",
        description="Serve the page of RELEASE_DIR (a folder `mobiledx release` wrote, e.g. release/demo-skin) on "
                    "http://127.0.0.1:PORT/ until Ctrl-C. The page runs model.tflite in the browser with MediaPipe "
                    "Tasks for Web (on the CPU; the photo is not uploaded) and shows every class's probability, "
                    "the operating-point decision and the model card. Needs the page's npm package: `make web`.",
    )
    app.add_argument("release_dir", metavar="RELEASE_DIR", help="a release folder, e.g. release/demo-skin")
    app.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default: %(default)s; 0: any free one)")
    app.set_defaults(handler=cmd_app)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobiledx",
        description="Release, run and compare the on-device (.tflite) classifiers the pipeline trained. "
                    "Runs are read from the MLflow store (MLFLOW_TRACKING_URI, else sqlite <repo>/mlruns/mlflow.db).",
        epilog="Exit status: 0 ok; 1 predict could not read some images; 2 usage or setup error.",
    )
    parser.add_argument("--version", action="version", version=f"mobiledx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_release(sub)
    _add_predict(sub)
    _add_compare(sub)
    _add_cv(sub)
    _add_seeds(sub)
    _add_overlap(sub)
    _add_app(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag in ("minimize", "over_seeds"):
        if getattr(args, flag, False) and not args.best:
            parser.error(f"--{flag.replace('_', '-')} only applies with --best METRIC")
    try:
        return args.handler(args)
    except MobiledxError as error:
        _error(str(error))
    except Exception as error:
        mlflow_exceptions = sys.modules.get("mlflow.exceptions")
        if mlflow_exceptions is None or not isinstance(error, mlflow_exceptions.MlflowException):
            raise  # a bug: keep the traceback
        _error(f"MLflow ({os.environ.get('MLFLOW_TRACKING_URI') or 'local store'}): {error.message.splitlines()[0]}")
    return EXIT_ERROR


def console_main() -> int:
    """The ``mobiledx`` command: :func:`main`, with the native runtimes' known noise filtered from its output."""
    from mobiledx.quiet import filter_native_output

    filter_native_output()
    return main()


if __name__ == "__main__":
    sys.exit(console_main())

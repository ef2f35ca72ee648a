"""Stage export: float32, float16, dynamic-range and int8 .tflite files, each evaluated on the test split with
the LiteRT interpreter (accuracy, agreement with Keras, size, latency), a model card, and the whole release
bundle logged to the training run under the artifact folder ``tflite/``."""

import hashlib

import numpy as np
import pandas as pd

from mobiledx import registry, tracking
from mobiledx.config import DatasetPaths, dataset_entry, parse_stage_args
from mobiledx.data.cache import RowView, load_ingested
from mobiledx.evaluation import classification_metrics
from mobiledx.export import VARIANTS, TFLiteClassifier, convert_variants, median_latency_ms
from mobiledx.io import read_json, write_bytes, write_json, write_text
from mobiledx.metadata import load_encoder
from mobiledx.modelcard import build_model_card, render_markdown
from mobiledx.models import load_model


def metadata_inputs(paths: DatasetPaths, data, test_rows: np.ndarray, representative_rows: np.ndarray):
    """Encoded metadata of the test and calibration images with the training stage's encoder, and its
    description for the model card; ``(None, None, None)`` for an image-only model."""
    encoder = load_encoder(paths.model / "metadata_encoder.json")
    if encoder is None:
        return None, None, None
    description = {
        "features": encoder.feature_names,
        "age": f"(age - {encoder.age_mean:.2f}) / {encoder.age_std:.2f}; unknown age = 0 with age_missing = 1",
        "sex": f"one-hot over {encoder.sexes}", "site": f"one-hot over {encoder.sites}",
    }
    return (encoder.transform(data.manifest.iloc[test_rows]), encoder.transform(data.manifest.iloc[representative_rows]),
            description)


def main(argv=None) -> None:
    args, params = parse_stage_args(__doc__, argv)
    entry = dataset_entry(params, args.dataset)
    settings = params["export"]
    latency_runs = int(settings["latency_runs"])
    paths = DatasetPaths(args.dataset)
    data = load_ingested(paths)
    model = load_model(paths.model / "model.keras")

    test = data.split("test")
    test_rows = data.rows(test["image_id"])
    test_images = RowView(data.images, test_rows)  # read image by image
    y_true = data.class_indices(test["label"])
    keras_metrics = read_json(paths.evaluation / "metrics.json")
    keras_predictions = pd.read_csv(paths.evaluation / "predictions.csv", dtype=str, keep_default_na=False)
    if keras_predictions["image_id"].tolist() != test["image_id"].tolist():
        raise ValueError(f"{paths.evaluation / 'predictions.csv'} does not list this test split; re-run evaluate")
    keras_predicted = keras_predictions["predicted"].to_numpy()

    count = int(settings["representative_images"])
    train = data.split("train")
    chosen = np.random.default_rng(int(params["seed"])).permutation(len(train))[:count]
    representative_rows = data.rows(train["image_id"].iloc[chosen])
    representative_images = RowView(data.images, representative_rows)

    test_metadata, representative_metadata, metadata_encoding = metadata_inputs(
        paths, data, test_rows, representative_rows
    )
    representative = (
        representative_images if representative_metadata is None else (representative_images, representative_metadata)
    )

    out = paths.export
    flatbuffers = convert_variants(model, VARIANTS, representative)
    report, hashes, quantization = {}, {}, None
    for variant, flatbuffer in flatbuffers.items():
        name = f"model_{variant}.tflite"
        write_bytes(out / name, flatbuffer)
        hashes[name] = hashlib.sha256(flatbuffer).hexdigest()
        classifier = TFLiteClassifier(flatbuffer)
        probabilities = classifier.predict(test_images, test_metadata)
        metrics = classification_metrics(y_true, probabilities, data.classes)
        predicted = np.array(data.classes)[probabilities.argmax(axis=1)]
        report[variant] = {
            "size_bytes": len(flatbuffer),
            "accuracy": metrics["accuracy"],
            "balanced_accuracy": metrics["balanced_accuracy"],
            "accuracy_delta_vs_keras": metrics["accuracy"] - keras_metrics["accuracy"],
            "balanced_accuracy_delta_vs_keras": metrics["balanced_accuracy"] - keras_metrics["balanced_accuracy"],
            "agreement_with_keras": float(np.mean(predicted == keras_predicted)),
            "latency_ms_1_thread": median_latency_ms(classifier, test_images, test_metadata, threads=1, runs=latency_runs),
            "latency_ms_2_threads": median_latency_ms(classifier, test_images, test_metadata, threads=2, runs=latency_runs),
            "non_builtin_ops": classifier.custom_ops(),
        }
        if variant == "int8":
            quantization = classifier.quantization()
    reference = report["float32"]
    for figures in report.values():
        figures["size_ratio_to_float32"] = figures["size_bytes"] / reference["size_bytes"]
        figures["latency_ratio_to_float32"] = figures["latency_ms_1_thread"] / reference["latency_ms_1_thread"]

    run = read_json(paths.model / "run.json")
    subgroups = pd.read_csv(paths.evaluation / "subgroups.csv", dtype={"attribute": str, "value": str},
                            keep_default_na=False, na_values=[""])
    card = build_model_card(
        dataset=args.dataset,
        info=data.info,
        synthetic=entry.synthetic,
        params=params,
        run=run,
        metrics=keras_metrics,
        subgroups=subgroups.to_dict("records"),
        variants=report,
        quantization=quantization,
        metadata_encoding=metadata_encoding,
        files=hashes,
        architecture=f"{model.name}, {model.count_params():,} parameters",
    )
    write_text(out / "labels.txt", "\n".join(data.classes) + "\n")
    write_json(out / "export.json", report)
    write_json(out / "model_card.json", card)
    write_text(out / "model_card.md", render_markdown(card))

    import mlflow

    with tracking.resume_run(run["run_id"]):
        for variant, figures in report.items():
            mlflow.log_metrics({f"tflite_{variant}_{k}": float(v) for k, v in figures.items() if not isinstance(v, list)})
        mlflow.set_tag("synthetic_data", str(entry.synthetic).lower())
        bundle = [out / f"model_{variant}.tflite" for variant in report]
        bundle += [out / "labels.txt", out / "model_card.json", out / "model_card.md", paths.model / "metadata_encoder.json"]
        for path in bundle:  # tflite/ in the run is a complete release bundle
            mlflow.log_artifact(str(path), artifact_path="tflite")
    version = registry.register_run(run["run_id"], args.dataset)
    for variant, figures in report.items():
        print(f"{args.dataset} {variant}: {figures['size_bytes'] / 1e6:.2f} MB ({figures['size_ratio_to_float32']:.2f}x), "
              f"accuracy {figures['accuracy']:.3f} ({figures['accuracy_delta_vs_keras']:+.3f} vs Keras), "
              f"agreement {figures['agreement_with_keras']:.3f}, latency {figures['latency_ms_1_thread']:.2f} ms "
              f"1 thread / {figures['latency_ms_2_threads']:.2f} ms 2 threads ({figures['latency_ratio_to_float32']:.2f}x)")


    print(f"registered as version {version.version} of model {version.name!r}; "
          f"release it with: mobiledx release {args.dataset} --run-id {run['run_id']}")


if __name__ == "__main__":
    main()

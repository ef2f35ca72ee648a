"""Stage export: float32 and int8 .tflite files, evaluated on the test split, logged to the training run."""

import numpy as np
import pandas as pd

from mobiledx import tracking
from mobiledx.config import DatasetPaths, parse_stage_args
from mobiledx.data.cache import load_ingested
from mobiledx.evaluation import classification_metrics
from mobiledx.export import VARIANTS, TFLiteClassifier, convert
from mobiledx.io import read_json, write_bytes, write_json, write_text
from mobiledx.models import load_model


def main(argv=None) -> None:
    args, params = parse_stage_args(__doc__, argv)
    paths = DatasetPaths(args.dataset)
    data = load_ingested(paths)
    model = load_model(paths.model / "model.keras")
    test = data.split("test")
    test_images = data.images[data.rows(test["image_id"])]
    y_true = data.class_indices(test["label"])
    keras_predicted = pd.read_csv(paths.evaluation / "predictions.csv", dtype=str)["predicted"].to_numpy()

    count = int(params["export"]["representative_images"])
    train = data.split("train")
    chosen = np.random.default_rng(int(params["seed"])).permutation(len(train))[:count]
    representative = data.images[data.rows(train["image_id"].iloc[chosen])]

    out = paths.export
    report = {}
    for variant in VARIANTS:
        flatbuffer = convert(model, variant, representative)
        write_bytes(out / f"model_{variant}.tflite", flatbuffer)
        classifier = TFLiteClassifier(flatbuffer)
        probabilities = classifier.predict(test_images)
        metrics = classification_metrics(y_true, probabilities, data.classes)
        predicted = np.array(data.classes)[probabilities.argmax(axis=1)]
        report[variant] = {
            "size_bytes": len(flatbuffer),
            "accuracy": metrics["accuracy"],
            "balanced_accuracy": metrics["balanced_accuracy"],
            "agreement_with_keras": float(np.mean(predicted == keras_predicted)),
            "non_builtin_ops": classifier.custom_ops(),
        }
    write_text(out / "labels.txt", "\n".join(data.classes) + "\n")
    write_json(out / "export.json", report)

    import mlflow

    with tracking.resume_run(read_json(paths.model / "run.json")["run_id"]):
        for variant, figures in report.items():
            mlflow.log_metrics({f"tflite_{variant}_{k}": float(v) for k, v in figures.items() if not isinstance(v, list)})
            mlflow.log_artifact(str(out / f"model_{variant}.tflite"), artifact_path="tflite")
        mlflow.log_artifact(str(out / "labels.txt"), artifact_path="tflite")
    for variant, figures in report.items():
        print(f"{args.dataset} {variant}: {figures['size_bytes'] / 1e6:.2f} MB, accuracy {figures['accuracy']:.3f}, "
              f"agreement with Keras {figures['agreement_with_keras']:.3f}")


if __name__ == "__main__":
    main()

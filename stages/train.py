"""Stage train: fit the classifier, log params and per-epoch metrics to a new MLflow run."""

from mobiledx.pipeline import run_stage
from mobiledx.pipeline.train import train_dataset

if __name__ == "__main__":
    run_stage(train_dataset, __doc__)

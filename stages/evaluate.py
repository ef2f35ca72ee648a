"""Stage evaluate: test-split metrics and plots, logged to the training run."""

from mobiledx.pipeline import run_stage
from mobiledx.pipeline.evaluate import evaluate_dataset

if __name__ == "__main__":
    run_stage(evaluate_dataset, __doc__)

"""Stage rebalance: sub-sample, weight, re-sample or augment the training split offline."""

from mobiledx.pipeline import run_stage
from mobiledx.pipeline.rebalance import rebalance_dataset

if __name__ == "__main__":
    run_stage(rebalance_dataset, __doc__)

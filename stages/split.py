"""Stage split: a stratified, group-aware, seeded train/val/test assignment."""

from mobiledx.pipeline import run_stage
from mobiledx.pipeline.split import split_dataset

if __name__ == "__main__":
    run_stage(split_dataset, __doc__)

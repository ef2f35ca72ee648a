"""Stage ingest_external: a dataset kept for external validation only (external_datasets:) → manifest, image cache."""

from mobiledx.pipeline import run_stage
from mobiledx.pipeline.ingest import ingest_dataset

if __name__ == "__main__":
    run_stage(ingest_dataset, __doc__, stage_name="ingest_external")

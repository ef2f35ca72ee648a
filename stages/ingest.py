"""Stage ingest: raw dataset → manifest, image cache, quarantine report."""

from mobiledx.pipeline import run_stage
from mobiledx.pipeline.ingest import ingest_dataset

if __name__ == "__main__":
    run_stage(ingest_dataset, __doc__)

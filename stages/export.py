"""The export stage: the release bundle, each variant measured as the pipeline and as the phone runs it."""

from mobiledx.pipeline import run_stage
from mobiledx.pipeline.export import export_dataset

if __name__ == "__main__":
    run_stage(export_dataset, __doc__)

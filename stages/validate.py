"""Stage validate: the Great Expectations suite on the manifest; critical failures stop the pipeline."""

from mobiledx.pipeline import run_stage
from mobiledx.pipeline.validate import validate_dataset

if __name__ == "__main__":
    run_stage(validate_dataset, __doc__)

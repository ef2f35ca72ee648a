"""Stage external: a trained model evaluated on another dataset (an entry of external: in params.yaml)."""

from mobiledx.pipeline import run_stage
from mobiledx.pipeline.external import external_validation

if __name__ == "__main__":
    run_stage(external_validation, __doc__, recipe=False)

"""Stage make_demo: the synthetic demo datasets, in their real datasets' native layouts."""

from mobiledx.pipeline import run_stage
from mobiledx.pipeline.make_demo import make_demo

if __name__ == "__main__":
    run_stage(make_demo, __doc__, with_dataset=False)

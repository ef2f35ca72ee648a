"""Stage export: the .tflite variants with their metadata, measured by LiteRT on the test split and by MediaPipe
on the original test files as a phone app runs them, latency with litert-benchmark, a model card, and the release
bundle logged to the training run under ``tflite/``."""

from mobiledx.config import parse_stage_args
from mobiledx.pipeline.export import export


def main(argv=None) -> None:
    args, params = parse_stage_args(__doc__, argv)
    export(args.dataset, params)


if __name__ == "__main__":
    main()

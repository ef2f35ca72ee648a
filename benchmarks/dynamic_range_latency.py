"""Dynamic-range latency: float depthwise weights vs the converter's hybrid depthwise convolutions.

XNNPACK (LiteRT's CPU accelerator) has no hybrid depthwise kernel, so the converter's dynamic-range
model runs its int8-weight depthwise convolutions on reference kernels. mobiledx's dynamic-range
variant stores those weights in float32 (``mobiledx.tflite.quantization.float_depthwise_weights``). This
converts one model three ways and times each with ``litert-benchmark`` (median of ``--runs``):

- the converter's dynamic-range model (the baseline);
- mobiledx's dynamic-range variant (``mobiledx.tflite.conversion.convert``);
- float32, for reference.

Model: ``build_classifier`` (MobileNetV2, ``--alpha``, ``--size`` px, random weights: latency does not
depend on trained values).

    python benchmarks/dynamic_range_latency.py [--size 224] [--alpha 1.0] [--runs 100] [--threads 1,2]
"""

from __future__ import annotations

import argparse


def converter_dynamic_range(model) -> bytes:
    """The TFLite converter's own dynamic-range model, from the batch-1 SavedModel mobiledx converts."""
    import tensorflow as tf

    from mobiledx.tflite.conversion import batch1_saved_model

    with batch1_saved_model(model) as saved_model_dir:
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return converter.convert()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args()

    from mobiledx.models import build_classifier
    from mobiledx.tflite.conversion import convert_variants
    from mobiledx.tflite.ondevice import benchmark, cpu_ops

    model = build_classifier(num_classes=7, image_size=args.size, alpha=args.alpha, weights="none", dense_units=512)
    variants = convert_variants(model, ("float32", "dynamic_range"))
    models = {"converter dynamic_range": converter_dynamic_range(model),
              "mobiledx dynamic_range": variants["dynamic_range"], "float32": variants["float32"]}
    print(f"MobileNetV2 alpha {args.alpha}, {args.size} px, litert-benchmark median of {args.runs} runs")
    for threads in (int(t) for t in args.threads.split(",")):
        latency = {name: benchmark(flatbuffer, threads=threads, runs=args.runs)["median_ms"]
                   for name, flatbuffer in models.items()}
        baseline = latency["converter dynamic_range"]
        for name, flatbuffer in models.items():
            left_out = sorted(set(cpu_ops(flatbuffer))) or "none"
            print(f"  {threads} thread(s)  {name:24s} {latency[name]:7.2f} ms  {baseline / latency[name]:4.2f}x faster "
                  f"than the baseline  {len(flatbuffer) / 2**20:5.2f} MiB  not delegated: {left_out}")


if __name__ == "__main__":
    main()

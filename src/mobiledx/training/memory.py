"""How much memory a training needs, checked against what the machine has before anything is trained."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mobiledx.errors import MobiledxError
from mobiledx.params import TrainConfig

# Peak resident memory (RSS, what the kernel's OOM killer counts) of the train stage, fitted to what
# `benchmarks/memory_scaling.py --batch-sizes 16,32,64` measured (MobileNetV2 alpha 0.35 and 1.0, 224 px,
# 600x450 JPEGs in the HAM10000 layout; 2-core CPU, TF 2.21): a fixed base (TensorFlow, the libraries, the
# input pipeline, validation and BatchNorm passes) plus bytes per activation value per image in the batch
# (the float32 activations kept for the backward pass and their gradients in flight), plus weights,
# gradients and Adam's two moments. A least-squares fit of the six one-epoch peaks gave 1.33 GiB and 4.34
# bytes per value (within 3 %); over a long training RSS then creeps up by about 15 % until it levels off
# (12 epochs at alpha 1.0, batch 32: 4.28 GiB after one epoch, flat at 4.9 GiB from the eighth), so both
# terms are raised by 7 %: the estimate is within +10 % of every one-epoch peak and -8 % of that plateau.
MEMORY_BASE_BYTES = int(1.42 * 2**30)

ACTIVATION_BYTES = 4.65

PARAMETER_BYTES = 4 * 4

class TrainingMemoryError(MobiledxError, MemoryError):
    """The training would not fit in the memory this machine has available (raised before it starts)."""

def activation_values(model) -> int:
    """Values per image in all layer outputs of ``model`` (nested models included)."""
    total = 0
    for layer in model.layers:
        if getattr(layer, "layers", None):
            total += activation_values(layer)
            continue
        outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        total += sum(int(np.prod(tensor.shape[1:])) for tensor in outputs)
    return total

def estimate_training_memory(model, batch_size: int) -> int:
    """Estimated peak resident memory (RSS, bytes) of the train stage fitting ``model`` with ``batch_size``
    images per step."""
    return int(MEMORY_BASE_BYTES + ACTIVATION_BYTES * activation_values(model) * batch_size
               + PARAMETER_BYTES * model.count_params())

def available_memory() -> int | None:
    """Bytes of memory this process can still use: ``MemAvailable``, capped by a cgroup limit if any."""
    limits = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:
            limits.append(int(limit) - usage)
    return min(limits) if limits else None

def check_training_memory(model, config: TrainConfig, image_size: int, replicas: int = 1) -> None:
    """Print the estimated peak memory of the training; raise :class:`TrainingMemoryError`, naming the
    fix, when it exceeds what is available, before anything is trained (instead of being OOM-killed)."""
    per_replica = max(1, config.batch_size // replicas)
    needed = estimate_training_memory(model, per_replica) + (replicas - 1) * (
        estimate_training_memory(model, per_replica) - MEMORY_BASE_BYTES)
    available = available_memory()
    gib = 2**30
    what = f"{config.backbone}, alpha {config.alpha}, {image_size} px, batch {config.batch_size}"
    print(f"mobiledx: estimated peak memory of training: {needed / gib:.2f} GiB ({what}); available: "
          f"{'unknown' if available is None else f'{available / gib:.1f} GiB'}", flush=True)
    if available is None or needed <= available:
        return
    smaller = max(1, config.batch_size // 2)
    hint = (f"lower train.batch_size (at {smaller}: about {estimate_training_memory(model, smaller) / gib:.1f} GiB)"
            if config.batch_size > 1 else "lower ingest.image_size or train.alpha")
    raise TrainingMemoryError(
        f"training needs about {needed / gib:.1f} GiB of memory ({what}), but only {available / gib:.1f} GiB "
        f"is available. Fix: {hint}, or a smaller "
        f"ingest.image_size or train.alpha, or free memory (other programs, parallel `dvc queue` workers)."
    )

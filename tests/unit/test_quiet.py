"""Known native-runtime noise is filtered from the stages' output; everything else passes unchanged."""

import subprocess
import sys

from mobiledx.quiet import is_noise

NOISE_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1795926098.030035   11159 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors.",
    "E0000 00:00:1795926396.503148   13822 node_def_util.cc:682] NodeDef mentions attribute use_unbounded_threadpool "
    "which is not in the op definition: Op<name=MapDataset ...>",
    "fully_quantize: 0, inference_type: 6, input_inference_type: FLOAT32, output_inference_type: FLOAT32",
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
]
KEPT_LINES = ["Epoch 1/20", "E0000 00:00:1795926396.5 13822 some_other.cc:1] a real error", "Traceback (most recent",
              "mobiledx: error: raw data folder x does not exist"]


def test_the_noise_patterns_match_exactly_the_known_lines():
    assert all(is_noise(line) for line in NOISE_LINES)
    assert not any(is_noise(line) for line in KEPT_LINES)


def test_a_filtered_process_prints_everything_but_the_noise_from_native_writes_and_python():
    script = f"""
import os, sys
from mobiledx.quiet import filter_native_output
filter_native_output()
lines = {NOISE_LINES + KEPT_LINES!r}
for line in lines:
    os.write(2, (line + "\\n").encode())  # as the C++ runtime writes: straight to the file descriptor
print("python stdout")
sys.stderr.write("progress 50%\\rprogress 100%\\n")
os.write(1, b"no newline at exit")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)  # bytes: keep the \r
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"python stdout\nno newline at exit"
    assert done.stderr.decode() == "".join(line + "\n" for line in KEPT_LINES) + "progress 50%\rprogress 100%\n"

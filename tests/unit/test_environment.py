import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib import metadata

import numpy as np
import pytest

from mobiledx.tracking import environment

TF_CONFIG_SCRIPT = """
import json, sys
from mobiledx.tracking import environment
before = environment.describe()
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(3)
tf.config.experimental.enable_op_determinism()
print(json.dumps({"before": before, "after": environment.describe()}))
"""


def numpy_cpu_features() -> set[str]:
    """The SIMD features NumPy found on this CPU and uses (its runtime dispatch table)."""
    from numpy._core._multiarray_umath import __cpu_features__

    return {name for name, on in __cpu_features__.items() if on}


def _describe_in_subprocess(script: str, cwd, **env) -> dict:
    """Run ``script`` (which prints JSON) in a fresh interpreter with ``env`` added; returns what it printed."""
    variables = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=variables, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_versions_platform_and_cpu_are_recorded_as_short_strings():
    values = environment.describe(tensorflow=False)
    assert values["numpy"] == np.__version__
    assert values["keras"] == metadata.version("keras") and values["mlflow"] == metadata.version("mlflow")
    import tensorflow as tf  # the tensorflow-cpu wheel provides it here: its version and distribution are named
    assert values["tensorflow"].split(" ")[0] == tf.__version__
    assert values["python"] == platform.python_version()
    assert values["platform"] == f"{platform.system()}-{platform.machine()}"
    assert values["cpu_count"] == str(os.cpu_count()) and int(values["cpu_schedulable"]) >= 1
    assert values["cpu_model"] and values["lock_sha256"]
    simd = values["cpu_simd"].split(",")
    assert simd == sorted(simd) and simd == sorted(numpy_cpu_features())
    assert not set(environment.TF_KEYS) & set(values)  # TensorFlow's configuration was not asked for
    assert all(isinstance(v, str) and 0 < len(v) <= environment.MAX_VALUE_CHARS for v in values.values())
    assert environment.package_version("no-such-package-mobiledx") == "not installed"


def test_environment_variables_are_recorded_only_when_set_and_kept_short(monkeypatch):
    for name in environment.VARIABLES.values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    values = environment.describe(tensorflow=False)
    assert not set(environment.VARIABLES) & set(values)
    assert values["onednn"].startswith("unset")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "2")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    monkeypatch.setenv("TF_DETERMINISTIC_OPS", "x" * 6000)
    values = environment.describe(tensorflow=False)
    assert values["omp_num_threads"] == "1" and values["tf_num_intraop_threads_env"] == "2"
    assert values["onednn"] == "0"
    assert len(values["tf_deterministic_ops_env"]) == environment.MAX_VALUE_CHARS  # MLflow limits tag values
    assert values["tf_deterministic_ops_env"].endswith("…")


def test_lock_hash_follows_the_lock_files_bytes_and_says_none_without_one(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    stage_dir = tmp_path / "stages"
    stage_dir.mkdir()
    assert environment.lock_sha256(tmp_path) == "none"
    assert environment.describe(tmp_path, tensorflow=False)["lock_sha256"] == "none"
    lock = tmp_path / environment.LOCK_FILE
    lock.write_bytes(b"numpy==2.4.6 \\\n    --hash=sha256:" + b"0" * 64 + b"\n")
    first = environment.lock_sha256(tmp_path)
    assert first == hashlib.sha256(lock.read_bytes()).hexdigest()
    assert environment.lock_sha256(stage_dir) == first  # found at the project root from a folder below it
    lock.write_bytes(lock.read_bytes().replace(b"2.4.6", b"2.4.5"))
    assert environment.lock_sha256(tmp_path) not in (first, "none")
    lock.unlink()
    assert environment.lock_sha256(tmp_path) == "none"


def test_simd_list_reflects_features_numpy_was_told_to_disable(tmp_path):
    """NumPy reads NPY_DISABLE_CPU_FEATURES when it is imported: a fresh interpreter must not list the feature."""
    from numpy._core._multiarray_umath import __cpu_dispatch__

    enabled = numpy_cpu_features()
    dispatched = [name for name in __cpu_dispatch__ if name in enabled]  # only dispatched features can be disabled
    if not dispatched:
        pytest.skip("this CPU runs none of NumPy's dispatched (optional) SIMD targets: nothing to disable")
    feature = dispatched[-1]
    script = ("import json; from mobiledx.tracking import environment; "
              "print(json.dumps(environment.describe(tensorflow=False)))")
    disabled = _describe_in_subprocess(script, tmp_path, NPY_DISABLE_CPU_FEATURES=feature)
    assert feature in environment.describe(tensorflow=False)["cpu_simd"].split(",")
    assert feature not in disabled["cpu_simd"].split(",")
    assert disabled["npy_disable_cpu_features"] == feature
    untouched = _describe_in_subprocess(script, tmp_path, NPY_DISABLE_CPU_FEATURES="")
    assert feature in untouched["cpu_simd"].split(",") and "npy_disable_cpu_features" not in untouched


def test_tensorflow_threads_and_determinism_are_read_as_configured(tmp_path):
    result = _describe_in_subprocess(TF_CONFIG_SCRIPT, tmp_path)
    before, after = result["before"], result["after"]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert before["tf_intra_op_threads"] == before["tf_inter_op_threads"] == f"0 (TF default: {cpus})"
    assert before["tf_op_determinism"] == "false"
    assert after["tf_intra_op_threads"] == "1" and after["tf_inter_op_threads"] == "3"
    assert after["tf_op_determinism"] == "true"
    assert after["tf_gpus"].isdigit()
    assert {k: v for k, v in after.items() if k not in environment.TF_KEYS} == \
        {k: v for k, v in before.items() if k not in environment.TF_KEYS}


def test_tags_carry_the_env_prefix_and_read_back():
    values = {"lock_sha256": "none", "numpy": "2.4.6"}
    tags = environment.tags(values)
    assert tags == {"env.lock_sha256": "none", "env.numpy": "2.4.6"}
    assert environment.from_tags({**tags, "dataset": "demo-skin", "environment": "x"}) == values
    assert environment.from_tags({"dataset": "demo-skin"}) == {}


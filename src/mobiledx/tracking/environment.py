"""What could make two runs differ although code, params and data are the same: the environment a run records.

:func:`describe` returns a flat ``{key: short string}``: the hash of the dependency lock
(``requirements.lock``), the versions that compute the model (Python, NumPy, TensorFlow, Keras, MLflow),
the platform and CPU (model, count, the SIMD features NumPy dispatches to), and TensorFlow's
configuration (intra/inter-op threads, op determinism, oneDNN) with the environment variables that
change them. The train stage tags its MLflow run with :func:`tags` (keys ``env.<key>``) once
TensorFlow is configured, and the model card lists what the training run recorded (:func:`from_tags`).

Pure and cheap: nothing here fails a run (a missing lock file is ``"none"``, an unknown value
``"unknown"``), and TensorFlow is imported only for its configuration (``tensorflow=True``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
from importlib import metadata
from pathlib import Path

LOCK_FILE = "requirements.lock"
TAG_PREFIX = "env."
NO_LOCK = "none"  # no requirements.lock at the repository root: the run's dependencies are not pinned
MAX_VALUE_CHARS = 1000  # MLflow limits tag values (8000 characters); every value here stays far below
PACKAGES = ("numpy", "tensorflow", "keras", "mlflow")
# Environment variables that change results or speed: NumPy's SIMD dispatch (read when NumPy is imported),
# TensorFlow's thread pools and oneDNN's, and the deterministic-ops switch.
VARIABLES = {
    "npy_disable_cpu_features": "NPY_DISABLE_CPU_FEATURES",
    "omp_num_threads": "OMP_NUM_THREADS",
    "tf_num_intraop_threads_env": "TF_NUM_INTRAOP_THREADS",
    "tf_num_interop_threads_env": "TF_NUM_INTEROP_THREADS",
    "tf_deterministic_ops_env": "TF_DETERMINISTIC_OPS",
}
# Keys whose values come from TensorFlow's runtime configuration (read with ``tensorflow=True``).
TF_KEYS = ("tf_intra_op_threads", "tf_inter_op_threads", "tf_op_determinism", "tf_gpus")


def project_root(start: str | Path | None = None) -> Path:
    """The nearest folder from ``start`` (default: the working directory) up holding ``dvc.yaml``; else ``start``.

    DVC runs stages there: the repository, or a queued experiment's own copy of it.
    """
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    return here


def lock_sha256(root: str | Path | None = None) -> str:
    """SHA-256 of ``requirements.lock`` at the project root, or ``"none"`` when there is no such file."""
    path = project_root(root) / LOCK_FILE
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return NO_LOCK
    except OSError as error:  # unreadable: say so, never fail the run for it
        return f"unreadable ({type(error).__name__})"


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def package_version(package: str) -> str:
    """The installed version of the importable ``package``: its own distribution's, else the version and name
    of the distribution that provides it (``2.21.0 (tensorflow_cpu)``: TensorFlow's CPU-only build);
    ``"not installed"`` when there is none."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        pass
    found = []
    for name in dict.fromkeys(_distributions().get(package, [])):
        try:
            found.append(f"{metadata.version(name)} ({name})")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found) or "not installed"


def cpu_simd() -> str:
    """The SIMD features NumPy found on this CPU and did not have disabled, sorted and comma-joined.

    ``NPY_DISABLE_CPU_FEATURES`` (read when NumPy is imported) turns dispatched features off.
    """
    from numpy._core._multiarray_umath import __cpu_features__

    return ",".join(sorted(name for name, on in __cpu_features__.items() if on))


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` says, else ``"unknown"``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def schedulable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), what TensorFlow's default thread pools are sized to."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _threads(configured: int) -> str:
    """A TensorFlow thread setting; 0 is TensorFlow's default, shown with the count it then uses."""
    return str(configured) if configured else f"0 (TF default: {schedulable_cpus()})"


def tensorflow_config() -> dict[str, str]:
    """TensorFlow's runtime configuration as it is now: read it after the program has configured TensorFlow."""
    import tensorflow as tf

    try:
        from tensorflow.python.framework.config import is_op_determinism_enabled
        determinism = str(bool(is_op_determinism_enabled())).lower()
    except ImportError:
        determinism = "unknown"
    return {
        "tf_intra_op_threads": _threads(tf.config.threading.get_intra_op_parallelism_threads()),
        "tf_inter_op_threads": _threads(tf.config.threading.get_inter_op_parallelism_threads()),
        "tf_op_determinism": determinism,
        "tf_gpus": str(len(tf.config.list_physical_devices("GPU"))),
    }


def _short(value: str) -> str:
    return value if len(value) <= MAX_VALUE_CHARS else value[: MAX_VALUE_CHARS - 1] + "…"


def describe(root: str | Path | None = None, tensorflow: bool = True) -> dict[str, str]:
    """What could make a run differ, as ``{key: short string}`` (see the module docstring).

    ``root``: where to look for ``requirements.lock`` (default: :func:`project_root`). ``tensorflow``: also
    TensorFlow's runtime configuration (imports TensorFlow; read it once the program has configured it).
    Environment variables appear only when they are set (and not empty).
    """
    values = {
        "lock_sha256": lock_sha256(root),
        "python": platform.python_version(),
        **{package: package_version(package) for package in PACKAGES},
        "platform": f"{platform.system()}-{platform.machine()}",
        "cpu_model": cpu_model(),
        "cpu_count": str(os.cpu_count() or "unknown"),
        "cpu_schedulable": str(schedulable_cpus()),
        "cpu_simd": cpu_simd(),
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (TF default: on for x86 Linux)"),
        **{key: os.environ[name] for key, name in VARIABLES.items() if os.environ.get(name)},
    }
    if tensorflow:
        values.update(tensorflow_config())
    return {key: _short(str(value)) for key, value in values.items()}


def tags(values: dict[str, str]) -> dict[str, str]:
    """``values`` as MLflow tags: ``env.<key>`` (MLflow's UI groups them by the prefix)."""
    return {TAG_PREFIX + key: value for key, value in values.items()}


def from_tags(run_tags: dict[str, str]) -> dict[str, str]:
    """The environment recorded in a run's tags (the ``env.*`` ones, prefix removed), sorted by key."""
    return {key[len(TAG_PREFIX):]: value for key, value in sorted(run_tags.items()) if key.startswith(TAG_PREFIX)}

"""train.weights: imagenet without internet fails fast, in one line that names the fix (issue 25, item 3).

The network is blocked where the tests run; the probe is also forced to fail, so these tests behave the
same on a machine with internet.
"""

import socket
import threading
import time

import numpy as np
import pytest

from mobiledx.errors import MobiledxError
from mobiledx.models import WeightsUnavailableError, backbones, build_classifier

WEIGHTS_96 = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras cache (Keras reads $KERAS_HOME once, at import: its module value is what counts)."""
    from keras.src.backend import config

    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path / "keras"))
    (tmp_path / "keras").mkdir()
    return tmp_path / "keras"


def test_offline_imagenet_fails_in_one_line_naming_the_file_and_the_fix(keras_home, monkeypatch):
    monkeypatch.setattr(backbones, "unreachable", lambda url, timeout=1.5: "storage.googleapis.com:443: offline")
    started = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as caught:
        build_classifier(num_classes=2, image_size=96, alpha=0.35, weights="imagenet")
    elapsed = time.perf_counter() - started
    error = caught.value
    message = str(error)
    assert isinstance(error, MobiledxError)  # run_stage prints it as one `mobiledx: error:` line
    assert "\n" not in message
    assert WEIGHTS_96 in message and str(keras_home / "models" / WEIGHTS_96) in message
    assert "train.weights=none" in message and "offline" in message
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    assert elapsed < 20, f"took {elapsed:.1f} s"  # behaviour, not a benchmark: it must not hang
    assert not (keras_home / "models" / WEIGHTS_96).exists()


def test_really_offline_probe_answers_within_its_timeout(keras_home):
    """No stand-in: the real probe on this machine (no internet here: refused, unresolvable or silent)."""
    if backbones.unreachable(backbones.KERAS_WEIGHTS_HOST) is None:
        pytest.skip("this machine reaches the weights host: Keras would download the weights")
    started = time.perf_counter()
    with pytest.raises(WeightsUnavailableError, match="not cached and cannot be downloaded|could not be downloaded"):
        build_classifier(num_classes=2, image_size=96, alpha=0.35, weights="imagenet")
    assert time.perf_counter() - started < 20


def test_a_host_that_never_answers_counts_as_offline_within_the_timeout(monkeypatch):
    probe_returned = threading.Event()
    attempt_ended = threading.Event()

    def hanging(address, timeout=None):  # a resolver or firewall that swallows packets
        probe_returned.wait(60)  # until the probe has given up; a probe that never does fails after 60 s
        attempt_ended.set()
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", hanging)
    try:
        reason = backbones.unreachable("https://storage.googleapis.com/x.h5", timeout=0.5)
        gave_up_while_connecting = not attempt_ended.is_set()
    finally:
        probe_returned.set()  # ends the abandoned connection attempt
    # the probe gave up after its own timeout, not when the connection attempt ended (however slow the machine)
    assert gave_up_while_connecting and "did not answer within 0.5 s" in reason


def test_a_reachable_host_is_not_refused(monkeypatch):
    class Connection:
        def close(self):
            pass

    monkeypatch.setattr(socket, "create_connection", lambda address, timeout=None: Connection())
    assert backbones.unreachable("https://storage.googleapis.com/x.h5") is None


def test_a_proxy_is_probed_instead_of_the_host(monkeypatch):
    probed = []

    def record(address, timeout=None):
        probed.append(address)
        raise ConnectionRefusedError("refused")

    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setattr(socket, "create_connection", record)
    assert "proxy.example:3128" in backbones.unreachable("https://storage.googleapis.com/x.h5")
    assert probed == [("proxy.example", 3128)]


def test_cached_weights_are_used_without_any_network(keras_home, monkeypatch):
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    source = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, include_top=False, weights=None)
    (keras_home / "models").mkdir()
    with h5py.File(keras_home / "models" / WEIGHTS_96, "w") as handle:  # Keras' own cache format
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)

    def no_network(*args, **kwargs):
        raise AssertionError("the network was probed although the weights are cached")

    monkeypatch.setattr(backbones, "unreachable", no_network)
    model = build_classifier(num_classes=2, image_size=96, alpha=0.35, weights="imagenet")
    assert np.array_equal(model.layers[2].get_weights()[0], source.get_weights()[0])
    from keras.src.utils import file_utils

    assert file_utils.get_file.__name__ == "get_file"  # the guard is gone once the backbone is built


def test_a_corrupt_cached_file_is_named_with_the_fix(keras_home):
    (keras_home / "models").mkdir()
    (keras_home / "models" / WEIGHTS_96).write_bytes(b"not hdf5")
    with pytest.raises(WeightsUnavailableError, match="cached ImageNet weights .* cannot be read .* Fix: delete it"):
        build_classifier(num_classes=2, image_size=96, alpha=0.35, weights="imagenet")


def test_preflight_fails_before_any_keras_import_when_nothing_is_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(backbones, "_keras_home", lambda: str(tmp_path / "keras"))
    monkeypatch.setattr(backbones, "unreachable", lambda url, timeout=1.5: "storage.googleapis.com:443: offline")
    with pytest.raises(WeightsUnavailableError, match=r"no ImageNet weights of MobileNetV2 are cached in .*"
                                                      r"train\.weights=none") as caught:
        backbones.preflight_weights("mobilenetv2", "imagenet")
    assert "\n" not in str(caught.value)
    backbones.preflight_weights("mobilenetv2", "none")  # nothing to check
    backbones.preflight_weights("cnn15", "imagenet")  # refused at build, with its own message


def test_a_keras_home_not_made_yet_is_where_keras_will_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(backbones, "_keras_home", lambda: str(tmp_path / ".keras"))
    assert backbones.keras_cache_path(WEIGHTS_96) == tmp_path / ".keras" / "models" / WEIGHTS_96


def test_preflight_leaves_a_cached_backbone_to_the_build(tmp_path, monkeypatch):
    (tmp_path / "keras" / "models").mkdir(parents=True)
    (tmp_path / "keras" / "models" / WEIGHTS_96).write_bytes(b"")
    monkeypatch.setattr(backbones, "_keras_home", lambda: str(tmp_path / "keras"))
    monkeypatch.setattr(backbones, "unreachable", lambda url, timeout=1.5: pytest.fail("probed although cached"))
    backbones.preflight_weights("mobilenetv2", "imagenet")


def test_preflight_imports_no_keras():
    import subprocess
    import sys

    code = ("import sys; from mobiledx.models.backbones import preflight_weights; "
            "print('keras' in sys.modules or 'tensorflow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"


def test_every_pretrained_backbone_has_a_cache_prefix():
    assert set(backbones.WEIGHTS_FILE_PREFIX) == {name for name, spec in backbones.BACKBONES.items()
                                                  if spec.constructor is not None}

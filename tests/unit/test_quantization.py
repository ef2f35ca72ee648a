import numpy as np
import pytest

from mobiledx.params import ExportParams
from mobiledx.tflite.quantization import DEFAULT_RANGE_PERCENTILE, RANGE_BINS, clipped_range


def _histogram(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    low, high = float(values.min()), float(values.max())
    counts, _ = np.histogram(values, bins=RANGE_BINS, range=(low, high))
    return counts, low, high


def test_clipped_range_holds_the_percentile_within_one_bin_and_drops_the_outliers():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(2.0, 3.0, 2_000_000), [-40.0, 60.0, 55.0]])  # three outliers
    counts, low, high = _histogram(values)
    new_low, new_high = clipped_range(counts, low, high, 99.999)
    width = (high - low) / RANGE_BINS
    exact_low, exact_high = np.percentile(values, [0.001, 99.999])
    assert exact_high <= new_high <= exact_high + width  # never cuts inside the kept quantile
    assert exact_low - width <= new_low <= exact_low
    assert new_high - new_low < 0.4 * (high - low)  # the int8 step is 2.5x finer than min/max's


def test_clipped_range_only_narrows_and_keeps_zero_exact():
    relu6 = np.concatenate([np.zeros(1000), np.random.default_rng(1).uniform(0.5, 6.0, 100_000)])
    counts, low, high = _histogram(relu6)
    new_low, new_high = clipped_range(counts, low, high, 99.9)
    assert new_low == 0.0 and 5.9 < new_high <= 6.0  # 0 stays representable although > 0.1 % of values are 0
    assert clipped_range(counts, low, high, 100.0) == (low, high)
    assert clipped_range(np.zeros(RANGE_BINS, np.int64), -1.0, 1.0, 99.0) == (-1.0, 1.0)  # nothing seen: unchanged


def test_clipped_range_refuses_a_percentile_that_keeps_less_than_half():
    with pytest.raises(ValueError, match=r"\(50, 100\]"):
        clipped_range(np.ones(8, np.int64), 0.0, 1.0, 40.0)


def test_the_code_default_is_the_params_default():
    assert ExportParams().int8_range_percentile == DEFAULT_RANGE_PERCENTILE

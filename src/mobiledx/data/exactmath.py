"""``exp`` and ``power`` whose results are the same bytes on every CPU.

NumPy picks a SIMD kernel for ``np.exp``, ``np.log`` and ``np.power`` at run time (AVX2, AVX-512, or the
plain C loop, see ``np._core._multiarray_umath.__cpu_features__``), and those kernels round differently in
the last bit. Rounded to uint8, one such bit flips a pixel now and then (2 of 700 demo JPEGs), and every
DVC stage after it re-runs. The functions here use only operations IEEE 754 rounds exactly on every path
(``+ - * /``, ``floor``, ``frexp``, ``ldexp``), in a fixed order, so the result depends on the input alone.
They are accurate to a few ulp in float64, far below the 1/255 step of an 8-bit pixel.
"""

from __future__ import annotations

import math

import numpy as np

_LN2_HI = 6.93147180369123816490e-01  # ln 2 split in two (fdlibm): k * _LN2_HI is exact for |k| < 2**20
_LN2_LO = 1.90821492927058770002e-10
_EXP_TERMS = [1.0 / math.factorial(n) for n in range(14)]  # Taylor terms of e**r, |r| <= ln2/2: error < 1e-17
_LOG_TERMS = [2.0 / (2 * n + 1) for n in range(12)]  # 2 atanh(s) = log((1+s)/(1-s)), |s| <= 0.172: error < 1e-18


def exact_exp(x) -> np.ndarray:
    """``e ** x`` (float64), the same bytes on every CPU; ``x`` is clipped to [-700, 700] (no overflow)."""
    x = np.clip(np.asarray(x, dtype=np.float64), -700.0, 700.0)
    k = np.floor(x / _LN2_HI + 0.5)
    r = (x - k * _LN2_HI) - k * _LN2_LO  # x = k ln2 + r
    poly = np.full_like(r, _EXP_TERMS[-1])
    for term in reversed(_EXP_TERMS[:-1]):
        poly = poly * r + term
    return np.ldexp(poly, k.astype(np.int64))


def exact_log(x) -> np.ndarray:
    """Natural logarithm of ``x > 0`` (float64), the same bytes on every CPU."""
    mantissa, exponent = np.frexp(np.asarray(x, dtype=np.float64))  # x = m 2**e, m in [0.5, 1)
    low = mantissa < math.sqrt(0.5)
    mantissa = np.where(low, mantissa * 2.0, mantissa)  # m in [0.707, 1.414)
    exponent = (exponent - low).astype(np.float64)
    s = (mantissa - 1.0) / (mantissa + 1.0)
    s2 = s * s
    series = np.full_like(s, _LOG_TERMS[-1])
    for term in reversed(_LOG_TERMS[:-1]):
        series = series * s2 + term
    return (s * series + exponent * _LN2_LO) + exponent * _LN2_HI


def exact_power(base, exponent: float) -> np.ndarray:
    """``base ** exponent`` for ``base >= 0`` and a scalar ``exponent > 0`` (``0 ** p = 0``), CPU-independent."""
    base = np.asarray(base, dtype=np.float64)
    positive = base > 0
    powered = exact_exp(float(exponent) * exact_log(np.where(positive, base, 1.0)))
    return np.where(positive, powered, 0.0)

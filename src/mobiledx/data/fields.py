"""Exact conversion of the metadata fields every adapter reports: nothing becomes "missing" silently.

Adapters hand over raw text for ages, sexes, sites and ids. Each value either converts exactly,
or its row is quarantined with the field, the raw value and the reason. Harmless normalisations
(surrounding spaces, letter case, an empty value meaning "unknown") do happen, and each kind is
counted, so that the validation report says how many values were touched and how.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

SEXES = ("male", "female", "unknown")
SEX_SYNONYMS = {"m": "male", "f": "female"}  # abbreviations some exports use
UNKNOWN = "unknown"
DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")
AGE_RANGE = (0.0, 120.0)  # years: a value outside refuses its row (one row's fault stays that row's)


@dataclass
class FieldReport:
    """What converting the fields did: rows refused (with reasons) and normalisations counted per field."""

    refused: dict[int, str] = field(default_factory=dict)  # record position -> reason
    normalised: Counter = field(default_factory=Counter)  # "field: what" -> count

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.normalised.items()))


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _clean(field_name: str, value, report: FieldReport) -> str:
    """Surrounding spaces removed and Unicode NFC (a name typed two ways is one name), each counted."""
    raw = _text(value)
    text = raw.strip()
    if text != raw:
        report.normalised[f"{field_name}: surrounding spaces removed"] += 1
    if not text.isascii():
        normal = unicodedata.normalize("NFC", text)
        if normal != text:
            report.normalised[f"{field_name}: Unicode-normalised (NFC)"] += 1
            text = normal
    return text


def convert_age(raw, report: FieldReport, position: int) -> float:
    """Years as a float: empty means unknown (NaN, counted); anything that is not a number refuses the row."""
    text = _clean("age", raw, report)
    if not text:
        report.normalised["age: empty, kept as unknown"] += 1
        return math.nan
    if DECIMAL_COMMA.fullmatch(text):  # 45,5 from a spreadsheet in a language that writes decimals so
        report.normalised["age: decimal comma read as a decimal point"] += 1
        text = text.replace(",", ".")
    try:
        value = float(text)
    except ValueError:
        report.refused.setdefault(position, f"age {_text(raw)!r} is not a number of years")
        return math.nan
    if not math.isfinite(value):
        report.refused.setdefault(position, f"age {_text(raw)!r} is not a finite number of years")
        return math.nan
    if not AGE_RANGE[0] <= value <= AGE_RANGE[1]:
        report.refused.setdefault(position, f"age {_text(raw)!r} is outside {AGE_RANGE[0]:g}-{AGE_RANGE[1]:g} years")
        return math.nan
    return value


def convert_sex(raw, report: FieldReport, position: int) -> str:
    """``male``, ``female`` or ``unknown``; case, ``M``/``F`` and empty values are normalised (counted)."""
    text = _clean("sex", raw, report)
    if not text:
        report.normalised["sex: empty, kept as unknown"] += 1
        return UNKNOWN
    lowered = text.lower()
    if lowered != text:
        report.normalised["sex: lower-cased"] += 1
    if lowered in SEX_SYNONYMS:
        report.normalised[f"sex: {text!r} read as {SEX_SYNONYMS[lowered]!r}"] += 1
        return SEX_SYNONYMS[lowered]
    if lowered not in SEXES:
        report.refused.setdefault(position, f"sex {_text(raw)!r} is not male, female or unknown")
        return UNKNOWN
    return lowered


def convert_category(field_name: str, raw, report: FieldReport) -> str:
    """A free-vocabulary category (anatomical site): lower-cased, empty means ``unknown`` (both counted)."""
    text = _clean(field_name, raw, report)
    if not text:
        report.normalised[f"{field_name}: empty, kept as unknown"] += 1
        return UNKNOWN
    lowered = text.lower()
    if lowered != text:
        report.normalised[f"{field_name}: lower-cased"] += 1
    return lowered


def convert_id(field_name: str, raw, report: FieldReport) -> str:
    """An identifier: surrounding spaces removed (counted), empty means none."""
    return _clean(field_name, raw, report)


def convert_fields(records: pd.DataFrame) -> tuple[pd.DataFrame, FieldReport]:
    """Convert ``age``, ``sex``, ``site``, ``lesion_id``, ``patient_id`` and ``image_id`` of adapter records.

    Returns the converted records (every row, refused ones included) and the report: refused rows
    by position with their reason, and the normalisations counted.
    """
    report = FieldReport()
    converted = records.copy()
    converted["image_id"] = [convert_id("image_id", v, report) for v in records["image_id"]]
    converted["age"] = [convert_age(v, report, i) for i, v in enumerate(records["age"])]
    converted["sex"] = [convert_sex(v, report, i) for i, v in enumerate(records["sex"])]
    converted["site"] = [convert_category("site", v, report) for v in records["site"]]
    for column in ("lesion_id", "patient_id"):
        converted[column] = [convert_id(column, v, report) for v in records[column]]
    converted["age"] = converted["age"].astype(float)
    return converted, report

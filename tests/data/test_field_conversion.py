"""The field conversion value by value: every normalisation counted once per value touched, under its field's
name; ages read exactly up to the range's ends; the records handed back with the columns they came with."""

import math
import unicodedata

import pandas as pd

from mobiledx.data.fields import convert_fields

DECOMPOSED = unicodedata.normalize("NFD", "Café")  # "Cafe" + a combining acute accent, as macOS writes it


def _records(n: int, **columns) -> pd.DataFrame:
    base = {"image_id": [f"i{k}" for k in range(n)], "path": [f"i{k}.jpg" for k in range(n)], "label": ["a"] * n,
            "lesion_id": [""] * n, "patient_id": [""] * n, "age": [""] * n, "sex": [""] * n, "site": [""] * n}
    return pd.DataFrame({**base, **columns})


def test_each_normalised_value_is_counted_under_its_own_field():
    records = _records(4, image_id=[" a ", "b\t", "c", "d"], age=["", None, "45,5", "7,25"],
                       sex=["", "", "M", "M"], site=["Back", "FACE", math.nan, " "],
                       lesion_id=[" L1", "L1 ", "", ""])
    converted, report = convert_fields(records)
    assert report.refused == {}
    assert converted["image_id"].tolist() == ["a", "b", "c", "d"]
    assert converted["age"].tolist()[2:] == [45.5, 7.25] and converted["age"][:2].isna().all()
    assert converted["sex"].tolist() == ["unknown", "unknown", "male", "male"]
    assert converted["site"].tolist() == ["back", "face", "unknown", "unknown"]
    assert converted["lesion_id"].tolist() == ["L1", "L1", "", ""]
    assert report.as_dict() == {
        "age: decimal comma read as a decimal point": 2, "age: empty, kept as unknown": 2,
        "image_id: surrounding spaces removed": 2, "lesion_id: surrounding spaces removed": 2,
        "sex: 'M' read as 'male'": 2, "sex: empty, kept as unknown": 2, "sex: lower-cased": 2,
        "site: empty, kept as unknown": 2, "site: lower-cased": 2, "site: surrounding spaces removed": 1}
    assert list(converted.columns) == list(records.columns) and converted["age"].dtype == float
    assert records["image_id"].tolist()[0] == " a "  # the adapter's frame is left as it was


def test_names_typed_two_ways_become_one_and_only_the_changed_ones_are_counted():
    composed = unicodedata.normalize("NFC", DECOMPOSED)
    records = _records(3, site=[DECOMPOSED, DECOMPOSED, composed], patient_id=["P", f"{DECOMPOSED}s", composed])
    converted, report = convert_fields(records)
    assert converted["site"].tolist() == ["café"] * 3
    assert converted["patient_id"].tolist() == ["P", "Cafés", "Café"]
    assert report.as_dict() == {"age: empty, kept as unknown": 3, "sex: empty, kept as unknown": 3,
                                "patient_id: Unicode-normalised (NFC)": 1, "site: Unicode-normalised (NFC)": 2,
                                "site: lower-cased": 3}


def test_ages_are_read_up_to_both_ends_of_the_range_and_refused_beyond_with_the_raw_value():
    ages = ["0", "120", "120.5", "-1", " 130 ", "inf", "119,9"]
    converted, report = convert_fields(_records(len(ages), age=ages))
    assert converted["age"].tolist()[:2] == [0.0, 120.0] and converted["age"][6] == 119.9
    assert converted["age"][2:6].isna().all()
    assert report.refused == {2: "age '120.5' is outside 0-120 years", 3: "age '-1' is outside 0-120 years",
                              4: "age ' 130 ' is outside 0-120 years", 5: "age 'inf' is not a finite number of years"}


def test_no_records_convert_to_no_records_with_every_column():
    records = _records(0)
    converted, report = convert_fields(records)
    assert converted.empty and list(converted.columns) == list(records.columns)
    assert converted["age"].dtype == float and report.refused == {} and report.as_dict() == {}

"""Metadata tables as people save them, read exactly: the encoding found and said, text that stays text however
long the table, blank rows, repeated column names, and every normalisation counted once per file read."""

import codecs
import re

import pytest

from mobiledx.data.adapters.registry import DatasetLayoutError, MetadataFileError, Quarantine, read_table

TEXT = "image_id,dx\nISIC_0000001,nv\nISIC_0000002,mel\n"
ROWS = [["ISIC_0000001", "nv"], ["ISIC_0000002", "mel"]]


def _read(tmp_path, data: bytes, name: str = "metadata.csv", **options):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    quarantine = Quarantine()
    table, refused = read_table(path, ["image_id"], "a test table", quarantine, **options)
    return table, refused, quarantine


BOM_LESS = "UTF-16 without a byte-order mark"
# UTF-16 without a byte-order mark is recognised when at least a quarter of the first bytes are zero, all on one side
HALF = "id\n中文字字\n"  # 4 of 8 characters Latin: exactly a quarter of the 16 bytes are zero
ODD = "id\n中文字字字\n"  # 4 of 9: 4 zero bytes of 18, just over len // 4
FEW = "id\n中文字字字字\n"  # 4 of 10: 4 zero bytes of 20, under a quarter: not taken for UTF-16
# only the first 4096 bytes are looked at: 一 (U+4E00, a zero low byte) just past them does not count
LONG = "image_id\n" + "x" * 2039 + "一\n"


@pytest.mark.parametrize(("data", "column", "rows", "read_as"), [
    (TEXT.encode("utf-8"), "image_id", ROWS, None),
    ("image_id,dx\nISIC_0000001,Café\n".encode("cp1252"), "image_id", [["ISIC_0000001", "Café"]], None),
    (codecs.BOM_UTF8 + TEXT.encode("utf-8"), "image_id", ROWS, "UTF-8 with a byte-order mark"),
    (TEXT.encode("utf-16"), "image_id", ROWS, "UTF-16 (Excel's 'Unicode Text')"),
    (TEXT.encode("utf-16-le"), "image_id", ROWS, BOM_LESS),
    (TEXT.encode("utf-16-be"), "image_id", ROWS, BOM_LESS),
    (HALF.encode("utf-16-le"), "id", [["中文字字"]], BOM_LESS),
    (HALF.encode("utf-16-be"), "id", [["中文字字"]], BOM_LESS),
    (ODD.encode("utf-16-le"), "id", [["中文字字字"]], BOM_LESS),
    (ODD.encode("utf-16-be"), "id", [["中文字字字"]], BOM_LESS),
    (LONG.encode("utf-16-le"), "image_id", [["x" * 2039 + "一"]], BOM_LESS),
])
def test_the_encoding_is_found_and_said_unless_it_is_utf8_or_windows_1252(tmp_path, data, column, rows, read_as):
    path = tmp_path / "metadata.csv"
    path.write_bytes(data)
    quarantine = Quarantine()
    table, refused = read_table(path, [column], "a test table", quarantine)
    assert refused == {} and table.values.tolist() == rows
    assert quarantine.normalised == ({} if read_as is None else {f"metadata: metadata.csv read as {read_as}": 1})
    assert [note.split(":")[0] for note in quarantine.notes] == (["metadata.csv is not UTF-8 (byte 0xe9 on line 2)"]
                                                                 if b"\xe9" in data else [])


SAVE_AS = "Fix: open it in Excel (or any spreadsheet) and save it as 'CSV UTF-8 (Comma delimited)'"


@pytest.mark.parametrize(("data", "problem"), [
    (FEW.encode("utf-16-le"), "holds binary data (NUL bytes), not CSV text. Fix: replace it with the metadata file as "
                              "distributed"),
    (FEW.encode("utf-16-be"), "holds binary data (NUL bytes), not CSV text. Fix: replace it with the metadata file as "
                              "distributed"),
    ("image_id,dx\nA,\x00\n".encode("utf-16"), f"holds NUL characters, not CSV text. {SAVE_AS}"),
    (b"\x00" * 64 + b"image_id\n", "holds binary data (NUL bytes), not CSV text. Fix: replace it with the metadata "
                                   "file as distributed"),  # zero bytes on both sides: no UTF-16 text
])
def test_text_that_cannot_be_a_table_is_refused_saying_why(tmp_path, data, problem):
    with pytest.raises(MetadataFileError) as raised:
        _read(tmp_path, data)
    assert str(raised.value) == f"{tmp_path / 'metadata.csv'} {problem}"


def test_a_file_that_breaks_its_byte_order_mark_is_refused_naming_the_encoding(tmp_path):
    with pytest.raises(MetadataFileError) as raised:
        _read(tmp_path, codecs.BOM_UTF8 + b"image_id,dx\nA,\xff\n")
    # which byte and line: not checked, as the position is counted after the byte-order mark (reported)
    assert re.fullmatch(rf"{re.escape(str(tmp_path / 'metadata.csv'))} starts as UTF-8 with a byte-order mark, but "
                        rf"byte 0x[0-9a-f]{{2}} on line \d+ does not decode as such: the file is damaged or mixes "
                        rf"encodings\. {re.escape(SAVE_AS)}", str(raised.value))


def test_normalisations_are_counted_for_each_file_read(tmp_path):
    quarantine = Quarantine()
    data = codecs.BOM_UTF8 + " Image_ID ;dx;note\nISIC_0000001;ne\u0301vus;cafe\u0301\n".encode("utf-8")
    for folder in ("a", "b"):  # two files of one name, e.g. a label file in each of two folders
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "labels.csv").write_bytes(data)
        table, _ = read_table(tmp_path / folder / "labels.csv", ["image_id"], "a test table", quarantine)
        assert table.values.tolist() == [["ISIC_0000001", "névus", "café"]]
    assert quarantine.normalised == {"metadata: column 'Image_ID' read as 'image_id'": 2,
                                     "metadata: labels.csv read as UTF-8 with a byte-order mark": 2,
                                     "metadata: labels.csv read with semicolons as delimiter": 2,
                                     "metadata: values Unicode-normalised (NFC)": 4}


def test_values_stay_text_exactly_however_long_the_table(tmp_path):
    # longer than the chunk of rows pandas reads at a time (2**18): each chunk would guess its own types
    lines = ["image_id,age,note"] + [f"I{k},045,NA" for k in range(270_000)]
    lines[5] = "I4,,nan"
    lines[7] = "I6,NULL,"
    table, refused, quarantine = _read(tmp_path, ("\n".join(lines) + "\n").encode())
    assert len(table) == 270_000 and refused == {} and quarantine.normalised == {}
    assert table.iloc[-1].tolist() == ["I269999", "045", "NA"]
    assert table.iloc[4].tolist() == ["I4", "", "nan"] and table.iloc[6].tolist() == ["I6", "NULL", ""]


def test_a_byte_order_mark_saved_twice_is_no_part_of_the_first_column_name(tmp_path):
    table, _, quarantine = _read(tmp_path, codecs.BOM_UTF8 * 2 + TEXT.encode())
    assert list(table.columns) == ["image_id", "dx"] and table.values.tolist() == ROWS
    assert quarantine.normalised == {"metadata: metadata.csv read as UTF-8 with a byte-order mark": 1}


def test_blank_rows_hold_no_listing_and_repeated_other_columns_are_kept_numbered(tmp_path):
    data = b"image_id,x,x,x\nA,1,2,3\n\n , , , \n,,,\nB,4,5,6\n"
    table, refused, _ = _read(tmp_path, data)
    assert list(table.columns) == ["image_id", "x", "x.1", "x.2"] and refused == {}
    assert table.values.tolist() == [["A", "1", "2", "3"], ["B", "4", "5", "6"]]


def test_a_header_cell_holding_a_line_break_keeps_it(tmp_path):
    table, _, _ = _read(tmp_path, b'image_id,"note\r\nsecond line"\r\nA,x\r\n')
    assert list(table.columns) == ["image_id", "note\r\nsecond line"] and table.values.tolist() == [["A", "x"]]


def test_a_one_column_table_is_read_with_commas(tmp_path):
    table, refused, quarantine = _read(tmp_path, b"image_id\nA\nB,C\n", id_column="image_id")
    assert table.values.tolist() == [["A"]] and list(refused) == ["B"] and quarantine.normalised == {}


def test_a_table_whose_every_row_is_malformed_is_empty_with_its_columns(tmp_path):
    table, refused, _ = _read(tmp_path, b"image_id,dx\nA,nv,extra\n", id_column="image_id")
    assert table.empty and list(table.columns) == ["image_id", "dx"] and list(refused) == ["A"]


@pytest.mark.parametrize(("data", "shown"), [(b"name,dx\nA,nv\n", ""),
                                              (b"name;dx\nA;nv\n", " (read with semicolons as delimiter)")])
def test_a_missing_column_is_named_with_the_delimiter_used_and_the_default_fix(tmp_path, data, shown):
    with pytest.raises(DatasetLayoutError) as raised:
        _read(tmp_path, data)
    assert str(raised.value) == (f"{tmp_path / 'metadata.csv'}: missing required column(s) ['image_id'] of a test "
                                 f"table; found ['name', 'dx']{shown}. Fix: use the file as distributed, or check "
                                 f"datasets.<name>.kind")


def test_a_required_column_named_twice_is_refused(tmp_path):
    with pytest.raises(DatasetLayoutError) as raised:
        _read(tmp_path, b"image_id,dx,image_id\nA,nv,B\n")
    assert str(raised.value) == (f"{tmp_path / 'metadata.csv'}: 2 columns are named 'image_id': which one holds the "
                                 f"data is unknown. Fix: remove or rename the extra column")

import math
import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.data.dataset import DataError, load_csv, parse_number


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "d.csv"
    path.write_text(text)
    return path


def test_reads_features_from_header_and_label_column(tmp_path):
    ds = load_csv(write(tmp_path, "a,b,label\n1,2,0\n3,4.5,1\n"), label_column="label")
    assert ds.feature_names == ["a", "b"]
    np.testing.assert_array_equal(ds.X, [[1, 2], [3, 4.5]])
    np.testing.assert_array_equal(ds.labels, [False, True])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("a,b\n1,x\n", "line 2, column 'b': 'x' is not numeric"),
        ("a,b\n1,2\n1,nan\n", "line 3, column 'b': NaN is not allowed"),
        ("a,b\n1,inf\n", "line 2, column 'b': infinity is not allowed"),
        ("a,b\n1,\n", "line 2, column 'b': missing value"),
        ("a,b\n1,2,3\n", "line 2: 3 cells, header has 2"),
        ("a,a\n1,2\n", "duplicate column names ['a']"),
    ],
)
def test_bad_files_name_the_problem(tmp_path, text, message):
    with pytest.raises(DataError, match=None) as err:
        load_csv(write(tmp_path, text))
    assert message in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        load_csv(tmp_path / "nope.csv")


def test_too_few_rows(tmp_path):
    with pytest.raises(DataError, match="has 2 data rows; at least 10 are needed"):
        load_csv(write(tmp_path, "a\n1\n2\n"), min_rows=10)


def test_unknown_label_column(tmp_path):
    with pytest.raises(DataError, match="label column 'y' not found"):
        load_csv(write(tmp_path, "a\n1\n"), label_column="y")


@pytest.mark.parametrize(
    ("cell", "value"),
    [("1", 1.0), (" -1.5 ", -1.5), ("+.5", 0.5), ("2.", 2.0), ("1e-3", 0.001), ("-0", -0.0),
     ("1.7976931348623157e308", 1.7976931348623157e308)],
)  # fmt: skip
def test_plain_decimal_numbers_are_read(cell, value):
    assert parse_number(cell) == value


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("1_01", "'1_01' is not a plain decimal number"),  # float() reads it as 101
        (
            "\u0661\u0662",
            "is not a plain decimal number",
        ),  # Arabic-Indic digits: float() takes them
        ("1e999", "'1e999' is beyond float64's range"),
        ("nan", "NaN is not allowed"),
        ("-Infinity", "infinity is not allowed"),
        ("0x10", "'0x10' is not numeric"),
        ("1,5", "'1,5' is not numeric"),
        ("", "missing value"),
        ("y" * 5000, "'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy'... (5,000 characters) is not"),
    ],
)
def test_other_number_syntax_is_refused_with_the_reason(cell, reason):
    with pytest.raises(ValueError) as err:
        parse_number(cell)
    assert reason in str(err.value)


def test_a_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfmean,sd\r\n1,2\r\n")
    assert load_csv(path).feature_names == ["mean", "sd"]


def test_blank_lines_and_empty_rows_are_skipped_other_widths_are_not(tmp_path):
    ds = load_csv(write(tmp_path, "a,b\n1,2\n\n , \n3,4\n"))
    np.testing.assert_array_equal(ds.X, [[1, 2], [3, 4]])
    with pytest.raises(DataError, match="line 3: 4 cells, header has 2"):
        load_csv(write(tmp_path, "a,b\n1,2\n,,,\n"))


def test_named_features_ignore_other_columns_whatever_their_names(tmp_path):
    ds = load_csv(write(tmp_path, "x,,sd,x,mean,y\n0,,2,0,1,1\n"), features=["mean", "sd"],
                  label_column="y")  # fmt: skip
    np.testing.assert_array_equal(ds.X, [[1, 2]])
    np.testing.assert_array_equal(ds.labels, [True])


def test_a_long_quoted_record_is_refused_by_its_first_line(tmp_path):
    path = write(tmp_path, 'a,b\n1,2\n3,"4\n' + "5555\n" * 400 + '"\n')
    with pytest.raises(DataError, match=r"lines 3-\d+: a record longer than 1,024 bytes"):
        load_csv(path, max_line_bytes=1024)


def test_memory_stays_bounded_on_a_long_line(tmp_path):
    """A 16 MB line of commas costs the reader about the line limit (1 MiB), not 100 times the
    line (a list of 16 million empty cells), and is refused, not skipped as blank."""
    path = tmp_path / "commas.csv"
    with path.open("wb") as fh:
        fh.write(b"a,b\n1,2\n")
        fh.write(b"," * (16 * 1024 * 1024))
        fh.write(b"\n3,4\n")
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as err:
            load_csv(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "line 3: longer than 1,048,576 bytes" in str(err.value)
    assert peak < 4 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


@given(st.text(alphabet="0123456789.eE+-_ nafiINF\u0661", max_size=12))
@settings(max_examples=1000, deadline=None)
def test_numbers_are_exactly_the_plain_decimal_syntax(text):
    """parse_number's fast path (float() plus checks) accepts what the documented syntax does."""
    stripped = text.strip()
    plain = re.fullmatch(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", stripped)
    expected = float(stripped) if plain and math.isfinite(float(stripped)) else None
    try:
        got = parse_number(text)
    except ValueError:
        got = None
    assert got == expected

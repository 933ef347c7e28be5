from pathlib import Path

import numpy as np
import pytest

from service.dataset import DataError, load_csv


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

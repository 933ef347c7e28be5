"""The breast cancer recipe: the documented rows, labels and split, the same bytes for a seed."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer

from service.data import public_datasets
from service.data.dataset import load_csv


def test_the_recipe_is_odds_wbc_split_in_two_halves(tmp_path):
    train_path, test_path = public_datasets.breast_cancer(tmp_path, seed=42)
    bunch = load_breast_cancer()
    names = [n.replace(" ", "_") for n in bunch.feature_names]
    benign = {tuple(row) for row in bunch.data[bunch.target_names[bunch.target] == "benign"]}
    malignant = {tuple(row) for row in bunch.data[bunch.target_names[bunch.target] == "malignant"]}

    train = load_csv(train_path)
    assert train.feature_names == names and "label" not in train.feature_names
    test = load_csv(test_path, features=names, label_column="label")
    assert (train.n_rows, test.n_rows, int(test.labels.sum())) == (188, 190, 11)

    # Every value reads back bit for bit as a row of scikit-learn's data, and labels say which.
    train_rows = [tuple(row) for row in train.X]
    test_rows = [tuple(row) for row in test.X]
    assert all(row in benign or row in malignant for row in train_rows)
    assert [row in malignant for row in test_rows] == test.labels.tolist()
    assert sum(row in malignant for row in train_rows) == 10
    # All benign rows, split between the files; 21 malignant ones in all, none in both.
    assert sorted(r for r in train_rows + test_rows if r in benign) == sorted(benign)
    assert len({r for r in train_rows + test_rows if r in malignant}) == 21
    assert not set(train_rows) & set(test_rows)


def test_the_same_seed_writes_the_same_bytes(tmp_path):
    a = public_datasets.breast_cancer(tmp_path / "a", seed=7)
    b = public_datasets.breast_cancer(tmp_path / "b", seed=7)
    c = public_datasets.breast_cancer(tmp_path / "c", seed=8)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert a[1].read_bytes() != c[1].read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["test.csv", "train.csv"]


def test_command_line(tmp_path, capsys):
    assert public_datasets.main(["--out-dir", str(tmp_path / "wbc")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert np.loadtxt(tmp_path / "wbc" / "test.csv", delimiter=",", skiprows=1).shape == (190, 31)

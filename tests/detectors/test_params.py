"""Parameters: parsed the same from CLI strings and JSON values, defaults as PyOD's, and every
refusal names the kind and the parameter."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from service.detectors import detector, table
from service.detectors.base import FitError, ParamError
from service.detectors.table import UnknownKindError

PYOD_CLASSES = {
    "ecod": "pyod.models.ecod:ECOD",
    "copod": "pyod.models.copod:COPOD",
    "hbos": "pyod.models.hbos:HBOS",
    "knn": "pyod.models.knn:KNN",
    "lof": "pyod.models.lof:LOF",
    "pca": "pyod.models.pca:PCA",
    "ocsvm": "pyod.models.ocsvm:OCSVM",
    "mcd": "pyod.models.mcd:MCD",
    "cblof": "pyod.models.cblof:CBLOF",
}


def _pyod_defaults(path: str) -> dict:
    module, _, name = path.partition(":")
    cls = getattr(__import__(module, fromlist=[name]), name)
    return {
        k: p.default
        for k, p in inspect.signature(cls.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


@pytest.mark.parametrize("kind", sorted(PYOD_CLASSES))
def test_defaults_are_pyods(kind: str) -> None:
    pyod = _pyod_defaults(PYOD_CLASSES[kind])
    ours = detector.resolve_params(kind, {})
    assert ours["contamination"] == pyod["contamination"] == 0.1
    for spec in table.get(kind).params:
        assert ours[spec.name] == pyod[spec.name], spec.name


def test_iforest_defaults_are_todays_training_params() -> None:
    from service.training.trainer import TrainingParams

    ours = detector.resolve_params("iforest", {})
    tp = TrainingParams()
    assert ours["contamination"] == tp.contamination
    for name in ("n_estimators", "max_samples", "max_features", "bootstrap"):
        assert ours[name] == getattr(tp, name)


def test_cli_strings_and_json_values_give_the_same_params() -> None:
    from_cli = detector.resolve_params(
        "knn", ["n_neighbors=10", "method=mean", "contamination=0.05", "scaler=standard"]
    )
    from_json = detector.resolve_params(
        "knn", {"n_neighbors": 10, "method": "mean", "contamination": 0.05, "scaler": "standard"}
    )
    assert from_cli == from_json
    assert from_cli["n_neighbors"] == 10 and isinstance(from_cli["n_neighbors"], int)
    assert from_cli["p"] == 2.0 and from_cli["max_train_rows"] == 20_000
    assert detector.resolve_params("pca", ["n_components=none"])["n_components"] is None
    assert detector.resolve_params("pca", {"n_components": 0.9})["n_components"] == 0.9
    assert detector.resolve_params("hbos", ["n_bins=auto"])["n_bins"] == "auto"
    assert detector.resolve_params("autoencoder", ["hidden_layer_sizes=8,2,8"])[
        "hidden_layer_sizes"
    ] == (8, 2, 8)
    assert detector.resolve_params("knn", ["max_train_rows=none"])["max_train_rows"] is None
    assert detector.resolve_params("mcd", {"assume_centered": "true"})["assume_centered"] is True


@pytest.mark.parametrize(
    ("kind", "given", "message"),
    [
        (
            "lof",
            ["n_neighbour=3"],
            "lof: unknown parameter 'n_neighbour' (known: n_neighbors, p, "
            "contamination, scaler, max_train_rows)",
        ),
        ("knn", ["n_neighbors=x"], "knn: n_neighbors must be an integer in [1, 10000], got 'x'"),
        ("knn", {"n_neighbors": 2.5}, "knn: n_neighbors must be an integer in [1, 10000], got 2.5"),
        (
            "knn",
            {"n_neighbors": True},
            "knn: n_neighbors must be an integer in [1, 10000], got True",
        ),
        (
            "knn",
            ["method=biggest"],
            "knn: method must be one of largest, mean, median, got 'biggest'",
        ),
        (
            "ecod",
            ["contamination=0.7"],
            "ecod: contamination must be a number in (0.0, 0.5], got '0.7'",
        ),
        ("ecod", {"contamination": 0}, "ecod: contamination must be a number in (0.0, 0.5], got 0"),
        (
            "ecod",
            ["contamination=nan"],
            "ecod: contamination must be a number in (0.0, 0.5], got 'nan'",
        ),
        (
            "pca",
            ["scaler=zscore"],
            "pca: scaler must be one of none, standard, minmax, robust, got 'zscore'",
        ),
        ("hbos", ["n_bins=2"], "hbos: n_bins must be 'auto' or an integer in [3, 100000], got '2'"),
        ("hbos", ["alpha=1"], "hbos: alpha must be a number in (0.0, 1.0), got '1'"),
        ("ocsvm", ["gamma=-1"], "ocsvm: gamma must be 'auto', 'scale' or a number > 0, got '-1'"),
        (
            "knn",
            ["max_train_rows=5"],
            "knn: max_train_rows must be an integer >= 10 or none, got '5'",
        ),
        (
            "autoencoder",
            ["hidden_layer_sizes=8,0"],
            "autoencoder: hidden_layer_sizes must be 'auto' or a list of layer widths such as "
            "32,4,32, got '8,0'",
        ),
        ("knn", ["n_neighbors"], "knn: parameter 'n_neighbors' must be written name=value"),
        ("knn", ["p=1", "p=2"], "knn: parameter 'p' is given twice"),
    ],
)
def test_bad_params_name_the_kind_and_the_parameter(kind, given, message) -> None:
    with pytest.raises(ParamError) as err:
        detector.resolve_params(kind, given)
    assert str(err.value) == message


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(UnknownKindError, match=r"unknown detector kind 'lofz' \(known: iforest, "):
        detector.resolve_params("lofz", {})


def test_fit_refuses_unusable_data_with_the_reason() -> None:
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(FitError, match=r"knn: n_neighbors \(25\) must be smaller than the number"):
        detector.fit("knn", X, {"n_neighbors": 25})
    with pytest.raises(FitError, match="ecod: 5 training rows; at least 10 are needed"):
        detector.fit("ecod", X[:5])
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(FitError, match="hbos: training data has NaN or infinite values"):
        detector.fit("hbos", bad)
    with pytest.raises(FitError, match="pca: the fitted detector gives non-finite scores"):
        detector.fit("pca", np.zeros((20, 2)))

"""The table of kinds: every kind the issue names is listed, once, by the module that defines
it, and a kind module registers itself on import (adding a kind touches one module)."""

from __future__ import annotations

import importlib
import pkgutil

import service.detectors
from service.detectors import detector, table
from service.detectors.base import DetectorKind

EXPECTED = [
    "iforest",
    "ecod",
    "copod",
    "hbos",
    "knn",
    "lof",
    "pca",
    "ocsvm",
    "mcd",
    "cblof",
    "autoencoder",
]


def test_the_table_lists_every_kind_in_order() -> None:
    assert table.names() == EXPECTED
    for name, kind in table.kinds().items():
        assert isinstance(kind, DetectorKind)
        assert kind.name == name and kind.summary
        names = [p.name for p in detector.param_specs(kind).values()]
        assert len(names) == len(set(names)), f"{name} repeats a parameter name"
        assert {"contamination", "scaler", "max_train_rows"} <= set(names)


def test_each_kind_module_registers_its_kinds_and_is_in_the_table() -> None:
    """Every module of the package that defines a kind is in KIND_MODULES, and importing it
    is what puts its kinds in the table."""
    defining = set()
    for info in pkgutil.iter_modules(service.detectors.__path__):
        module = importlib.import_module(f"service.detectors.{info.name}")
        own = [
            obj
            for obj in vars(module).values()
            if isinstance(obj, type)
            and issubclass(obj, DetectorKind)
            and obj.__module__ == module.__name__
            and isinstance(getattr(obj, "name", None), str)
        ]
        for cls in own:
            defining.add(module.__name__)
            assert type(table.get(cls.name)) is cls, f"{cls.name} is not registered by its module"
    assert defining == set(table.KIND_MODULES)


def test_registering_a_second_kind_under_a_taken_name_fails() -> None:
    class Impostor(DetectorKind):
        name = "lof"
        summary = "not LOF"

        def fit(self, X, params, seed):
            raise NotImplementedError

        def scorer(self, state):
            raise NotImplementedError

    try:
        table.register(Impostor())
    except ValueError as exc:
        assert "registered twice" in str(exc)
    else:
        raise AssertionError("a second 'lof' was accepted")
    assert type(table.get("lof")).__name__ == "LOF"

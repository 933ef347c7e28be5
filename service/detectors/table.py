"""The table of detector kinds: the one place that lists them.

Each kind module calls :func:`register` on import; :data:`KIND_MODULES` names those modules so
the table can import them on first use. Adding a kind: one module that registers itself, its
name here, and its tests.
"""

from __future__ import annotations

import importlib

from service.detectors.base import DetectorKind


class UnknownKindError(ValueError):
    """A detector kind name that is not in the table (the message lists the known ones)."""


__all__ = ["KIND_MODULES", "UnknownKindError", "get", "kinds", "names", "register"]

# Modules that define kinds (imported lazily, in this order: it is the order kinds are listed).
KIND_MODULES = (
    "service.detectors.iforest",
    "service.detectors.ecdf",
    "service.detectors.hbos",
    "service.detectors.neighbors",
    "service.detectors.pca",
    "service.detectors.ocsvm",
    "service.detectors.mcd",
    "service.detectors.cblof",
    "service.detectors.autoencoder",
)

_KINDS: dict[str, DetectorKind] = {}
_loaded = False


def register(kind: DetectorKind) -> DetectorKind:
    """Add ``kind`` to the table (called by its module at import). Names are unique."""
    existing = _KINDS.get(kind.name)
    if existing is not None and type(existing) is not type(kind):
        raise ValueError(f"detector kind {kind.name!r} is registered twice")
    _KINDS[kind.name] = kind
    return kind


def _load() -> None:
    global _loaded
    if not _loaded:
        for module in KIND_MODULES:
            importlib.import_module(module)
        _loaded = True


def kinds() -> dict[str, DetectorKind]:
    """Every registered kind by name, in the order of KIND_MODULES (then of registration)."""
    _load()

    def position(item: tuple[int, DetectorKind]) -> tuple[int, int]:
        i, kind = item
        module = type(kind).__module__
        rank = KIND_MODULES.index(module) if module in KIND_MODULES else len(KIND_MODULES)
        return rank, i

    ordered = sorted(enumerate(_KINDS.values()), key=position)
    return {kind.name: kind for _, kind in ordered}


def names() -> list[str]:
    return list(kinds())


def get(name: str) -> DetectorKind:
    """The kind called ``name``; :class:`UnknownKindError` naming the known kinds otherwise."""
    table = kinds()
    if name not in table:
        raise UnknownKindError(f"unknown detector kind {name!r} (known: {', '.join(table)})")
    return table[name]

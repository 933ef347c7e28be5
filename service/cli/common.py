"""What several commands share: a setting as the service reads it, a model by path or name."""

from __future__ import annotations

from pathlib import Path


def settings_value(name: str):
    """One setting as the service would read it (VIGIL_* variables, defaults)."""
    from service.settings import Settings

    return getattr(Settings(), name)


def load_model(spec: str):
    """A model by artifact path, or by ``NAME``, ``NAME@VERSION`` or ``NAME@ALIAS`` in the
    registry (VIGIL_REGISTRY)."""
    from service.models import artifact, registry
    from service.models.loaded import Model

    path = Path(spec)
    if path.is_file() or "/" in spec or spec.endswith(".joblib"):
        return Model(artifact.load(path), source=path)
    name, _, at = spec.partition("@")
    root = Path(settings_value("registry"))
    lone = Path(settings_value("model_path"))
    known = registry.Registry(root).snapshot().models if root.is_dir() else {}
    if name not in known and name == settings_value("default_model") and lone.is_file():
        if at not in ("", "1", "default"):
            raise ValueError(f"model {name!r} is the lone file {lone.name}: it has version 1 only")
        return Model(artifact.load(lone), source=lone, name=name, number=1)
    info = registry.Registry(root).model(name)
    version = (info.version(at) if at.isdigit() else info.alias(at)) if at else info.default
    if version is None:
        raise ValueError(f"model {name!r} has no default version")
    return Model(artifact.load(version.path), source=version.path, name=name, number=version.number)

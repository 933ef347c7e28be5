"""What several commands share: a setting as the service reads it, a model by path or name."""

from __future__ import annotations

from pathlib import Path


def settings_value(name: str):
    """One setting as the service would read it (VIGIL_* variables, defaults)."""
    from service.settings import Settings

    return getattr(Settings(), name)


def model_source(spec: str) -> tuple[Path, str, int]:
    """``(artifact path, name, number)`` of a model given by artifact path, or by ``NAME``,
    ``NAME@VERSION`` or ``NAME@ALIAS`` in the registry (VIGIL_REGISTRY); the lone
    ``VIGIL_MODEL_PATH`` file answers to ``VIGIL_DEFAULT_MODEL`` (version 1)."""
    from service.models import registry

    path = Path(spec)
    if path.is_file() or "/" in spec or spec.endswith(".joblib"):
        return path, "default", 1
    name, _, at = spec.partition("@")
    root = Path(settings_value("registry"))
    lone = Path(settings_value("model_path"))
    known = registry.Registry(root).snapshot().models if root.is_dir() else {}
    if name not in known and name == settings_value("default_model") and lone.is_file():
        if at not in ("", "1", "default"):
            raise ValueError(f"model {name!r} is the lone file {lone.name}: it has version 1 only")
        return lone, name, 1
    info = registry.Registry(root).model(name)
    version = (info.version(at) if at.isdigit() else info.alias(at)) if at else info.default
    if version is None:
        raise ValueError(f"model {name!r} has no default version")
    return version.path, name, version.number


def load_model(spec: str):
    """The model :func:`model_source` names, verified and loaded."""
    from service.models import artifact
    from service.models.loaded import Model

    path, name, number = model_source(spec)
    return Model(artifact.load(path), source=path, name=name, number=number)

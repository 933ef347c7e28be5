from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from service.models import artifact
from service.models.artifact import ModelArtifact
from service.models.registry import Registry, RegistrySnapshot


@pytest.fixture(scope="session")
def trained(model_path) -> ModelArtifact:
    """A real trained artifact (the suite's session model), saved into every version."""
    return artifact.load(model_path)


@pytest.fixture
def save(trained) -> Callable[[Path], object]:
    return lambda path: artifact.save(trained, path)


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry(tmp_path / "registry")


def assert_complete(snap: RegistrySnapshot, verified: set[Path] | None = None) -> None:
    """Every visible version loads and verifies; every alias points at a visible version."""
    for model in snap:
        numbers = set(model.numbers)
        for alias, number in model.aliases.items():
            assert number in numbers, f"{model.name}: alias {alias} -> missing version {number}"
        for v in model.versions:
            if verified is not None and v.path in verified:
                continue
            assert v.error is None, f"{model.name} v{v.number}: {v.error}"
            loaded = artifact.load(v.path)  # hashes the file against the manifest
            assert loaded.sha256 == v.sha256
            assert loaded.version == v.model_version
            if verified is not None:
                verified.add(v.path)

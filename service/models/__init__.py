"""Models as stored: the registry of named, numbered, aliased versions (and, at integration,
the artifact format and the verified serving model). Free of FastAPI and Prometheus."""

from service.models.registry import (
    DEFAULT_ALIAS,
    ConflictError,
    InvalidNameError,
    ModelInfo,
    NotFoundError,
    Registry,
    RegistryError,
    RegistrySnapshot,
    VersionInfo,
    combine,
    select_versions,
    single_artifact,
)

__all__ = [
    "DEFAULT_ALIAS",
    "ConflictError",
    "InvalidNameError",
    "ModelInfo",
    "NotFoundError",
    "Registry",
    "RegistryError",
    "RegistrySnapshot",
    "VersionInfo",
    "combine",
    "select_versions",
    "single_artifact",
]

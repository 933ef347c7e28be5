"""The model artifact: a joblib file plus a JSON manifest that carries its SHA-256 and metadata.

A joblib file is a pickle, and loading a pickle runs code. So the loader reads the manifest
first, hashes the artifact file, and only unpickles it when the hash matches. Both files are
written atomically (temp file, fsync, rename) so a crash never leaves a half-written file
where the service loads from.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import threading
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib

from service.fastforest import CompiledForest

if TYPE_CHECKING:
    from sklearn.ensemble import IsolationForest

FORMAT_VERSION = 1
SKLEARN_VERSION = installed_version("scikit-learn")


class ArtifactError(Exception):
    """The artifact cannot be loaded. ``str()`` names the file's full path (for logs);
    ``public`` names only the file, for HTTP answers that must not reveal server paths."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    @property
    def public(self) -> str:
        return f"{self.path.name}: {self.reason}"


class ModelArtifact:
    """A trained model as stored: metadata, the compiled forest, and the estimator's bytes.

    Serving needs only the compiled forest (numpy arrays), so loading an artifact does not
    import scikit-learn, which costs about 100 MB per worker. The estimator itself is
    unpickled on first use, for large batches where scikit-learn is the faster path; its
    bytes come from the same hash-checked file.
    """

    def __init__(
        self,
        metadata: dict[str, Any],
        forest: CompiledForest,
        estimator_bytes: bytes,
        *,
        sha256: str | None = None,
        estimator: IsolationForest | None = None,
    ) -> None:
        self.metadata = metadata
        self.forest = forest
        self.estimator_bytes = estimator_bytes
        self.sha256 = sha256
        """The artifact file's hash, when it was loaded from a file."""
        self._estimator = estimator
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    def estimator(self) -> IsolationForest:
        """The scikit-learn estimator, unpickled once on first use."""
        with self._lock:
            if self._estimator is None:
                from sklearn.ensemble import IsolationForest

                est = joblib.load(io.BytesIO(self.estimator_bytes))
                if not isinstance(est, IsolationForest):
                    raise ArtifactError("model", "does not hold a fitted IsolationForest")
                self._estimator = est
            return self._estimator


def serialize(estimator: IsolationForest) -> bytes:
    buf = io.BytesIO()
    joblib.dump(estimator, buf)
    return buf.getvalue()


def manifest_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def content_hash(estimator_bytes: bytes) -> str:
    """SHA-256 of the fitted estimator's serialized bytes: the same fit gives the same hash."""
    return hashlib.sha256(estimator_bytes).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def save(artifact: ModelArtifact, path: str | Path) -> Path:
    """Write the artifact and its manifest atomically; returns the manifest's path."""
    path = Path(path)
    payload = {
        "format": FORMAT_VERSION,
        "metadata": artifact.metadata,
        "forest": artifact.forest.to_state(),
        "estimator": artifact.estimator_bytes,
    }
    _atomic_write(path, lambda fh: joblib.dump(payload, fh))
    manifest = {
        "format": FORMAT_VERSION,
        "artifact": path.name,
        "sha256": file_sha256(path),
        "size_bytes": path.stat().st_size,
        "metadata": artifact.metadata,
    }
    text = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    mpath = manifest_path(path)
    _atomic_write(mpath, lambda fh: fh.write(text))
    return mpath


def read_manifest(path: str | Path) -> dict[str, Any]:
    mpath = manifest_path(path)
    if not mpath.is_file():
        raise ArtifactError(mpath, "manifest not found (re-train to write it)")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(mpath, f"manifest is unreadable ({type(exc).__name__})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sha256"), str):
        raise ArtifactError(mpath, "manifest has no sha256")
    if manifest.get("format") != FORMAT_VERSION:
        raise ArtifactError(
            mpath, f"manifest has format {manifest.get('format')!r}, expected {FORMAT_VERSION}"
        )
    if not isinstance(manifest.get("metadata"), dict):
        raise ArtifactError(mpath, "manifest has no metadata")
    return manifest


def _sklearn_compatible(trained_with: str) -> bool:
    return trained_with.split(".")[:2] == SKLEARN_VERSION.split(".")[:2]


def load(path: str | Path) -> ModelArtifact:
    """Verify and load an artifact; nothing is unpickled unless its hash matches the manifest."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(path, "model file not found")
    manifest = read_manifest(path)
    actual = file_sha256(path)
    if actual != manifest["sha256"]:
        raise ArtifactError(
            path,
            f"model file does not match its manifest: sha256 {actual},"
            f" manifest says {manifest['sha256']}",
        )
    meta = manifest["metadata"]
    trained_with = str(meta.get("sklearn_version", "?"))
    if not _sklearn_compatible(trained_with):
        raise ArtifactError(
            path,
            f"trained with scikit-learn {trained_with}; this service runs"
            f" {SKLEARN_VERSION} (re-train it with this version)",
        )
    try:
        payload = joblib.load(path)
    except Exception as exc:  # a corrupt pickle can raise nearly anything
        raise ArtifactError(path, f"model file cannot be read: {type(exc).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise ArtifactError(path, "not a Vigil model artifact")
    if payload.get("metadata") != meta:
        raise ArtifactError(path, "metadata differs from its manifest")
    est_bytes = payload.get("estimator")
    if not isinstance(est_bytes, bytes) or content_hash(est_bytes)[:12] != meta.get("version"):
        raise ArtifactError(path, "the estimator does not match the model version")
    try:
        forest = CompiledForest.from_state(payload.get("forest"))
    except ValueError as exc:
        raise ArtifactError(path, str(exc)) from None
    names = meta.get("feature_names")
    if not isinstance(names, list) or not (
        forest.n_features == meta.get("n_features") == len(names)
    ):
        raise ArtifactError(
            path,
            f"the model takes {forest.n_features} features, metadata says"
            f" {meta.get('n_features')} ({names})",
        )
    return ModelArtifact(meta, forest, est_bytes, sha256=actual)

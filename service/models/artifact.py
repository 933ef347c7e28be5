"""The model artifact: a joblib file plus a JSON manifest that carries its SHA-256 and metadata.

A joblib file is a pickle, and loading a pickle runs code. So the loader reads the file once
into memory (no more than the manifest's ``size_bytes``), hashes those bytes, and unpickles
those same bytes only when the hash matches the manifest: swapping the file on disk between
the check and the unpickle changes nothing. Both files are written atomically (temp file,
fsync, rename) so a crash never leaves a half-written file where the service loads from.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import joblib

from service.data.atomic import atomic_write

FORMAT_VERSION = 2
"""2: any detector kind's state. Format 1 (IsolationForest only, before the registry) is
refused with a reason that says to re-train."""
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
"""A manifest is a few KB (metadata and probe rows); anything far larger is not one."""


class ArtifactError(Exception):
    """The artifact cannot be loaded.

    ``str()`` names the file's full path and any ``detail`` (for logs and the CLI); ``public``
    names only the file's base name and the ``reason``, for answers a client can see. So a
    ``reason`` must never hold a path or an exception's text (an ``OSError`` names its file):
    such text goes in ``detail``.
    """

    def __init__(self, path: str | Path, reason: str, detail: str | None = None) -> None:
        self.path = Path(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}" + (f" ({detail})" if detail else ""))

    @property
    def public(self) -> str:
        return f"{self.path.name}: {self.reason}"


class ModelArtifact:
    """A trained model as stored: its metadata and its detector's state.

    The state is plain data (numpy arrays and numbers, see ``service.detectors``), kept as the
    exact bytes that were hashed into the model version, so serving needs no scikit-learn or
    PyOD. It is unpickled once, on first use, from the same hash-checked file.
    """

    def __init__(
        self,
        metadata: dict[str, Any],
        state_bytes: bytes,
        *,
        sha256: str | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.metadata = metadata
        self.state_bytes = state_bytes
        self.sha256 = sha256
        """The artifact file's hash, when it was loaded from a file."""
        self._state = state
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    @property
    def kind(self) -> str:
        return str(self.metadata["kind"])

    def detector_state(self) -> dict[str, Any]:
        """The detector's state (``service.detectors.detector.load`` builds a scorer from it)."""
        with self._lock:
            if self._state is None:
                state = joblib.load(io.BytesIO(self.state_bytes))
                if not isinstance(state, dict):
                    raise ArtifactError("model", "does not hold a detector state")
                self._state = state
            return self._state


def serialize(state: dict[str, Any]) -> bytes:
    """A detector state's bytes: what the model version hashes and the artifact stores."""
    buf = io.BytesIO()
    joblib.dump(state, buf)
    return buf.getvalue()


def manifest_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def content_hash(state_bytes: bytes) -> str:
    """SHA-256 of the detector state's bytes: the same fit gives the same hash."""
    return hashlib.sha256(state_bytes).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save(artifact: ModelArtifact, path: str | Path) -> Path:
    """Write the artifact and its manifest atomically; returns the manifest's path."""
    path = Path(path)
    payload = {
        "format": FORMAT_VERSION,
        "metadata": artifact.metadata,
        "detector": artifact.state_bytes,
    }
    atomic_write(path, lambda fh: joblib.dump(payload, fh))
    manifest = {
        "format": FORMAT_VERSION,
        "artifact": path.name,
        "sha256": file_sha256(path),
        "size_bytes": path.stat().st_size,
        "metadata": artifact.metadata,
    }
    text = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    mpath = manifest_path(path)
    atomic_write(mpath, lambda fh: fh.write(text))
    return mpath


def os_reason(exc: OSError) -> str:
    """An OSError's reason without its file name (``str(exc)`` holds the full path)."""
    return exc.strerror or type(exc).__name__


def _open_regular(path: Path, what: str, missing: str) -> BinaryIO:
    """Open ``path`` for reading; refuse anything but a regular file. Non-blocking, so a FIFO
    put in its place cannot hang the loader. Every OSError becomes an ArtifactError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ArtifactError(path, missing) from None
    except OSError as exc:
        raise ArtifactError(path, f"{what} cannot be read ({os_reason(exc)})") from None
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    if not regular:
        os.close(fd)
        raise ArtifactError(path, f"{what} is not a regular file")
    return os.fdopen(fd, "rb")


def _read_manifest_bytes(mpath: Path) -> bytes:
    with _open_regular(mpath, "manifest", "manifest not found (re-train to write it)") as fh:
        try:
            text = fh.read(MAX_MANIFEST_BYTES + 1)
        except OSError as exc:
            raise ArtifactError(mpath, f"manifest cannot be read ({os_reason(exc)})") from None
    if len(text) > MAX_MANIFEST_BYTES:
        raise ArtifactError(mpath, f"manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    return text


def _parse_manifest(mpath: Path, text: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(mpath, f"manifest is unreadable ({type(exc).__name__})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sha256"), str):
        raise ArtifactError(mpath, "manifest has no sha256")
    if manifest.get("format") == 1:
        raise ArtifactError(
            mpath,
            "an artifact of format 1 (before detector kinds and the registry);"
            " re-train it with this version",
        )
    if manifest.get("format") != FORMAT_VERSION:
        raise ArtifactError(
            mpath, f"manifest has format {manifest.get('format')!r}, expected {FORMAT_VERSION}"
        )
    if not isinstance(manifest.get("metadata"), dict):
        raise ArtifactError(mpath, "manifest has no metadata")
    if not isinstance(manifest.get("artifact"), str):
        raise ArtifactError(mpath, "manifest has no artifact file name")
    size = manifest.get("size_bytes")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ArtifactError(mpath, "manifest has no size_bytes")
    return manifest


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the artifact at ``path``, with its fields checked."""
    mpath = manifest_path(path)
    return _parse_manifest(mpath, _read_manifest_bytes(mpath))


@dataclass(frozen=True)
class Verified:
    """An artifact file's bytes, read once and matched against its manifest; nothing unpickled.

    ``data`` is exactly what was hashed: it is what gets unpickled, and what a verified copy
    holds.
    """

    path: Path
    data: bytes
    sha256: str
    manifest: dict[str, Any]
    manifest_bytes: bytes


def read_verified(path: str | Path) -> Verified:
    """Read the artifact once, bounded by its manifest's size, and check name, size and hash."""
    path = Path(path)
    with _open_regular(path, "model file", "model file not found") as fh:
        mpath = manifest_path(path)
        manifest_bytes = _read_manifest_bytes(mpath)
        manifest = _parse_manifest(mpath, manifest_bytes)
        named = manifest["artifact"]
        if named != path.name:
            shown = Path(named).name[:100]  # a manifest's word, but never a path
            raise ArtifactError(
                path,
                f"the manifest is for {shown!r}, not {path.name!r}"
                " (copy a model together with its own manifest)",
            )
        expected = manifest["size_bytes"]
        try:
            size = os.fstat(fh.fileno()).st_size
            # A wrong size is refused before anything is read; one byte more than expected is
            # asked for, to catch a file that grows meanwhile.
            data = fh.read(expected + 1) if size == expected else b""
        except OSError as exc:
            raise ArtifactError(path, f"model file cannot be read ({os_reason(exc)})") from None
    if size == expected:
        size = len(data)
    if size != expected:
        raise ArtifactError(
            path, f"model file does not match its manifest: {size} bytes, manifest says {expected}"
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != manifest["sha256"]:
        raise ArtifactError(
            path,
            f"model file does not match its manifest: sha256 {actual},"
            f" manifest says {manifest['sha256']}",
        )
    return Verified(path, data, actual, manifest, manifest_bytes)


def load(path: str | Path) -> ModelArtifact:
    """Verify and load an artifact; nothing is unpickled unless its hash matches the manifest."""
    return from_verified(read_verified(path))


def from_verified(verified: Verified) -> ModelArtifact:
    """Unpickle the verified bytes (never the file again) and check what they hold."""
    path = verified.path
    meta = verified.manifest["metadata"]
    try:
        payload = joblib.load(io.BytesIO(verified.data))
    except Exception as exc:  # a corrupt pickle can raise nearly anything
        raise ArtifactError(
            path, f"model file cannot be read: {type(exc).__name__}", detail=str(exc)
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise ArtifactError(path, "not a Vigil model artifact")
    if payload.get("metadata") != meta:
        raise ArtifactError(path, "metadata differs from its manifest")
    state_bytes = payload.get("detector")
    if not isinstance(state_bytes, bytes) or content_hash(state_bytes)[:12] != meta.get("version"):
        raise ArtifactError(path, "the detector does not match the model version")
    names = meta.get("feature_names")
    if (
        not isinstance(names, list)
        or not all(isinstance(n, str) for n in names)
        or meta.get("n_features") != len(names)
        or not isinstance(meta.get("kind"), str)
    ):
        raise ArtifactError(path, "metadata has no usable kind, feature_names and n_features")
    return ModelArtifact(meta, state_bytes, sha256=verified.sha256)

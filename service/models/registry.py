"""The model registry: named models, numbered versions, aliases, in one folder.

This module is the only place that knows the folder layout::

    <root>/<name>/<number>/model.joblib        the artifact (opaque here; written by a callback)
    <root>/<name>/<number>/model.joblib.json   its manifest (sha256 + metadata)
    <root>/<name>/aliases.json                 {"aliases": {"default": 3}, "history": ..., ...}
    <root>/<name>/.lock                        flock'd by every writer of that model
    <root>/.staging-*, <root>/.trash-*         work folders; readers never look at them

Numbers and hashes: a version's *number* (1, 2, 3 per model, in the order versions were
registered, never reused after a delete) is the registry's handle for rollouts and rollbacks.
The artifact's content hash (``metadata["version"]``, shown as ``model_version``) says what
was trained; the same fit registered twice gets two numbers with one hash. Both are exposed.

Why it is safe to read while others write:
- a version is written into a staging folder inside the root (same filesystem), fsync'd, and
  renamed into place in one step, so a version folder either does not exist or is complete;
- numbers are allocated and renames done under the model's lock file (``fcntl.flock``), so two
  writers, in threads or processes, never get the same number;
- ``aliases.json`` is replaced atomically, carries a revision counter, and a snapshot re-reads
  it until it saw the same revision before and after listing the versions;
- a writer killed mid-write leaves only a staging folder, which readers ignore and the next
  writer removes (its flock'd ``.lock`` file tells a dead writer from a live one).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from service.data.atomic import atomic_write_bytes, fsync_dir, fsync_tree

ARTIFACT_FILE = "model.joblib"
MANIFEST_FILE = ARTIFACT_FILE + ".json"  # the artifact module's convention: "<artifact>.json"
ALIASES_FILE = "aliases.json"
DEFAULT_ALIAS = "default"
LEGACY_KIND = "iforest"
"""The kind of artifacts whose metadata names none: they predate detector kinds."""

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
NAME_RULE = "1-64 characters of a-z, 0-9, '_', '.', '-', starting with a letter or digit"
HISTORY_LIMIT = 100
"""Earlier targets kept per alias for rollback."""
LISTED_NAMES = 20
"""Most names an error message lists."""
STATE_FORMAT = 1
_SNAPSHOT_TRIES = 50
_STAGING = ".staging-"
_TRASH = ".trash-"
_ORPHAN_GRACE_S = 3600.0
"""A staging folder without its lock file (not made by a normal writer) is removed after this."""

LoadPolicy = Literal["aliased", "all", "latest"]


class RegistryError(Exception):
    """A registry operation was refused; the message names the model, version or alias."""


class InvalidNameError(RegistryError, ValueError):
    """A model name or alias breaks the naming rule (this also refuses path traversal)."""


class NotFoundError(RegistryError, LookupError):
    """No such model, version or alias; the message lists what exists (bounded)."""


class ConflictError(RegistryError):
    """The change contradicts the registry's state (deleting an aliased version, ...)."""


def check_name(value: object, what: str = "model name") -> str:
    """Return ``value`` if it is a valid model name or alias, else raise InvalidNameError."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise InvalidNameError(f"invalid {what} {value!r}: use {NAME_RULE}")
    return value


def check_version(value: object) -> int:
    """A version number from an int or a decimal string (CLI, URL), else InvalidNameError."""
    if isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and re.fullmatch(r"[1-9][0-9]{0,17}", value):
        return int(value)
    if isinstance(value, int) and value >= 1:
        return value
    raise InvalidNameError(f"invalid version {value!r}: use a whole number from 1")


def listing(items: Iterable[object]) -> str:
    """Names for an error message: at most LISTED_NAMES, then how many more."""
    items = [str(i) for i in items]
    if not items:
        return "none"
    more = len(items) - LISTED_NAMES
    shown = ", ".join(items[:LISTED_NAMES])
    return f"{shown} and {more} more" if more > 0 else shown


# --- the read side: immutable snapshots -------------------------------------------------------


@dataclass(frozen=True)
class VersionInfo:
    """One registered version as found on disk. ``error`` is set when its manifest cannot be
    read; such a version is listed (someone damaged it) but cannot be served."""

    model: str
    number: int
    path: Path
    """The artifact file, for the artifact loader (which verifies it against the manifest)."""
    sha256: str | None
    metadata: Mapping[str, Any]
    error: str | None = None
    previous_default: int | None = None
    """From :meth:`Registry.register` only: the version the ``default`` alias pointed to
    before this registration moved it here (None when it did not move it, or there was none)."""

    @property
    def model_version(self) -> str | None:
        """The artifact's content hash (what was trained), as the API reports it."""
        value = self.metadata.get("version")
        return None if value is None else str(value)

    @property
    def kind(self) -> str:
        return str(self.metadata.get("kind", LEGACY_KIND))


@dataclass(frozen=True)
class ModelInfo:
    name: str
    versions: tuple[VersionInfo, ...]
    """Sorted by number."""
    aliases: Mapping[str, int]
    history: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: MappingProxyType({}))
    """Per alias, its earlier targets, oldest first: what ``rollback`` goes back to."""

    @property
    def numbers(self) -> tuple[int, ...]:
        return tuple(v.number for v in self.versions)

    @property
    def default(self) -> VersionInfo | None:
        number = self.aliases.get(DEFAULT_ALIAS)
        return None if number is None else self._by_number(number)

    @property
    def latest(self) -> VersionInfo | None:
        return self.versions[-1] if self.versions else None

    def _by_number(self, number: int) -> VersionInfo | None:
        return next((v for v in self.versions if v.number == number), None)

    def version(self, number: int | str) -> VersionInfo:
        n = check_version(number)
        found = self._by_number(n)
        if found is None:
            raise NotFoundError(
                f"model {self.name!r} has no version {n}; versions: {listing(self.numbers)}"
            )
        return found

    def alias(self, alias: str) -> VersionInfo:
        check_name(alias, "alias")
        number = self.aliases.get(alias)
        found = None if number is None else self._by_number(number)
        if found is None:
            raise NotFoundError(
                f"model {self.name!r} has no alias {alias!r}; aliases: {listing(self.aliases)}"
            )
        return found

    def aliases_of(self, number: int) -> tuple[str, ...]:
        return tuple(sorted(a for a, n in self.aliases.items() if n == number))


@dataclass(frozen=True)
class RegistrySnapshot:
    """Every model at one moment; immutable, so serving can build from it off to the side."""

    models: Mapping[str, ModelInfo]
    root: Path | None = None

    def model(self, name: str) -> ModelInfo:
        check_name(name)
        found = self.models.get(name)
        if found is None:
            raise NotFoundError(f"no model {name!r}; models: {listing(sorted(self.models))}")
        return found

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self.models[name] for name in sorted(self.models))

    def __len__(self) -> int:
        return len(self.models)


def select_versions(
    snapshot: RegistrySnapshot, policy: LoadPolicy = "aliased", latest: int = 1
) -> tuple[VersionInfo, ...]:
    """The versions serving loads: those an alias points to (``aliased``), ``all``, or the
    ``latest`` N of each model. Aliased versions are always included, so every alias serves."""
    if policy not in ("aliased", "all", "latest"):
        raise ValueError(f"unknown load policy {policy!r}: use aliased, all or latest")
    if latest < 1:
        raise ValueError(f"latest must be at least 1, got {latest}")
    chosen: list[VersionInfo] = []
    for model in snapshot:
        numbers = set(model.aliases.values())
        if policy == "all":
            numbers.update(model.numbers)
        elif policy == "latest":
            numbers.update(model.numbers[-latest:])
        chosen.extend(v for v in model.versions if v.number in numbers)
    return tuple(chosen)


def _read_manifest(path: Path) -> tuple[str | None, dict[str, Any], str | None]:
    """(sha256, metadata, error) from a version's manifest, without trusting it further."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, {}, "manifest not found"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, {}, f"manifest is unreadable ({type(exc).__name__})"
    if not isinstance(manifest, dict):
        return None, {}, "manifest is not a JSON object"
    sha = manifest.get("sha256")
    meta = manifest.get("metadata")
    if not isinstance(sha, str) or not isinstance(meta, dict):
        return None, {}, "manifest has no sha256 or metadata"
    return sha, meta, None


def _version_info(model: str, number: int, folder: Path) -> VersionInfo:
    sha, meta, error = _read_manifest(folder / MANIFEST_FILE)
    if error is None and not (folder / ARTIFACT_FILE).is_file():
        error = "artifact file not found"
    return VersionInfo(model, number, folder / ARTIFACT_FILE, sha, MappingProxyType(meta), error)


def single_artifact(path: str | Path, name: str = DEFAULT_ALIAS) -> RegistrySnapshot:
    """Present one artifact file (``train --out PATH``, ``VIGIL_MODEL_PATH``) as a one-model
    registry: model ``name``, version 1, aliased ``default``, so serving treats both alike.
    A missing or unreadable file is still listed, with ``error`` saying why."""
    check_name(name)
    path = Path(path)
    sha, meta, error = _read_manifest(path.with_name(path.name + ".json"))
    if not path.is_file():
        error = "model file not found"
    version = VersionInfo(name, 1, path, sha, MappingProxyType(meta), error)
    info = ModelInfo(name, (version,), MappingProxyType({DEFAULT_ALIAS: 1}))
    return RegistrySnapshot(MappingProxyType({name: info}))


def combine(*snapshots: RegistrySnapshot) -> RegistrySnapshot:
    """One snapshot holding the models of several; a name in two of them is an error."""
    models: dict[str, ModelInfo] = {}
    for snap in snapshots:
        for name, info in snap.models.items():
            if name in models:
                raise ConflictError(f"model {name!r} is defined twice (rename one of them)")
            models[name] = info
    return RegistrySnapshot(MappingProxyType(models))


# --- the per-model state file -----------------------------------------------------------------


@dataclass
class _State:
    aliases: dict[str, int] = field(default_factory=dict)
    history: dict[str, list[int]] = field(default_factory=dict)
    last_version: int = 0
    """Highest number ever allocated, so a deleted number is never reused."""
    revision: int = 0

    @classmethod
    def read(cls, model_dir: Path) -> _State:
        try:
            raw = json.loads((model_dir / ALIASES_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RegistryError(
                f"model {model_dir.name!r}: {ALIASES_FILE} is unreadable ({type(exc).__name__})"
            ) from None
        try:
            return cls(
                aliases={str(k): int(v) for k, v in raw["aliases"].items()},
                history={str(k): [int(n) for n in v] for k, v in raw["history"].items()},
                last_version=int(raw["last_version"]),
                revision=int(raw["revision"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise RegistryError(
                f"model {model_dir.name!r}: {ALIASES_FILE} is not a registry state file"
            ) from None

    def write(self, model_dir: Path) -> None:
        self.revision += 1
        doc = {
            "format": STATE_FORMAT,
            "aliases": dict(sorted(self.aliases.items())),
            "history": {k: v for k, v in sorted(self.history.items()) if v},
            "last_version": self.last_version,
            "revision": self.revision,
        }
        text = json.dumps(doc, indent=2).encode() + b"\n"
        atomic_write_bytes(model_dir / ALIASES_FILE, text)

    def point(self, alias: str, number: int) -> int | None:
        """Move ``alias`` to ``number``, remembering where it pointed; returns that."""
        previous = self.aliases.get(alias)
        if previous is not None and previous != number:
            past = self.history.setdefault(alias, [])
            past.append(previous)
            del past[:-HISTORY_LIMIT]
        self.aliases[alias] = number
        return previous


@dataclass(frozen=True)
class AliasChange:
    model: str
    alias: str
    previous: int | None
    current: int


def _version_numbers(model_dir: Path) -> list[int]:
    try:
        names = os.listdir(model_dir)
    except FileNotFoundError:
        return []
    return sorted(int(n) for n in names if re.fullmatch(r"[1-9][0-9]{0,17}", n))


# --- the registry -----------------------------------------------------------------------------


class Registry:
    """A registry folder. Reads need no lock; every write takes the model's lock file."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # reading

    def snapshot(self) -> RegistrySnapshot:
        """Every model with its versions and aliases. A folder that is not a valid model name
        (``.staging-*``, ``model.joblib`` of a one-file setup, ...) is ignored; so is a model
        with no versions yet."""
        models: dict[str, ModelInfo] = {}
        try:
            entries = sorted(os.listdir(self.root))
        except FileNotFoundError:
            entries = []
        for name in entries:
            if NAME_PATTERN.fullmatch(name) and (self.root / name).is_dir():
                info = self._read_model(name)
                if info is not None and info.versions:
                    models[name] = info
        return RegistrySnapshot(MappingProxyType(models), self.root)

    def model(self, name: str) -> ModelInfo:
        """One model, read afresh; NotFoundError lists the models that exist."""
        check_name(name)
        info = self._read_model(name) if (self.root / name).is_dir() else None
        if info is None or not info.versions:
            return self.snapshot().model(name)  # raises, listing the names
        return info

    def _read_model(self, name: str) -> ModelInfo | None:
        model_dir = self.root / name
        for _ in range(_SNAPSHOT_TRIES):
            before = _State.read(model_dir)
            numbers = _version_numbers(model_dir)
            versions = [_version_info(name, n, model_dir / str(n)) for n in numbers]
            after = _State.read(model_dir)
            # A version folder vanishing while listed was deleted: a concurrent delete, which
            # changes the revision, so the retry settles it.
            versions = [v for v in versions if v.path.parent.is_dir()]
            if before.revision == after.revision and all(
                n in {v.number for v in versions} for n in after.aliases.values()
            ):
                return ModelInfo(
                    name,
                    tuple(versions),
                    MappingProxyType(dict(after.aliases)),
                    MappingProxyType({k: tuple(v) for k, v in after.history.items()}),
                )
        raise RegistryError(f"model {name!r} kept changing while being read; try again")

    # writing

    @contextlib.contextmanager
    def _locked(self, name: str, *, create: bool) -> Iterator[Path]:
        """Hold the model's lock; ``create`` makes the model folder if it is new."""
        check_name(name)
        model_dir = self.root / name
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
            try:
                model_dir.mkdir()
                fsync_dir(self.root)
            except FileExistsError:
                pass
        elif not model_dir.is_dir():
            raise NotFoundError(
                f"no model {name!r}; models: {listing(m.name for m in self.snapshot())}"
            )
        fd = os.open(model_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            for entry in os.listdir(model_dir):
                if entry.startswith(f".{ALIASES_FILE}.") and entry.endswith(".tmp"):
                    # a killed writer's: every alias writer holds this lock
                    (model_dir / entry).unlink(missing_ok=True)
            yield model_dir
        finally:
            os.close(fd)  # releases the flock

    def register(
        self, name: str, write: Callable[[Path], object], *, promote: bool = False
    ) -> VersionInfo:
        """Add a version of ``name``: ``write(path)`` writes the artifact at ``path`` and its
        manifest at ``path + ".json"`` (``lambda p: artifact.save(a, p)``). The version becomes
        visible complete or not at all. It takes the ``default`` alias when ``promote`` is set
        or when the model has no default yet (its first version)."""
        check_name(name)
        self.root.mkdir(parents=True, exist_ok=True)
        self.clean()
        token = f"{_STAGING}{name}-{os.getpid()}-{secrets.token_hex(4)}"
        staging = self.root / token
        lock_fd = os.open(self.root / f"{token}.lock", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)  # tells clean() this staging folder is alive
            staging.mkdir()
            write(staging / ARTIFACT_FILE)
            for needed in (ARTIFACT_FILE, MANIFEST_FILE):
                if not (staging / needed).is_file():
                    raise RegistryError(
                        f"model {name!r}: the writer did not produce {needed}; nothing registered"
                    )
            fsync_tree(staging)
            with self._locked(name, create=True) as model_dir:
                state = _State.read(model_dir)
                number = max([state.last_version, *_version_numbers(model_dir)]) + 1
                target = model_dir / str(number)
                os.rename(staging, target)  # atomic; fails rather than merge into a folder
                fsync_dir(model_dir)
                fsync_dir(self.root)
                state.last_version = number
                previous = None
                if promote or DEFAULT_ALIAS not in state.aliases:
                    previous = state.point(DEFAULT_ALIAS, number)
                state.write(model_dir)
            return replace(_version_info(name, number, target), previous_default=previous)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            (self.root / f"{token}.lock").unlink(missing_ok=True)
            os.close(lock_fd)

    def promote(self, name: str, version: int | str, alias: str = DEFAULT_ALIAS) -> AliasChange:
        """Point ``alias`` at ``version``; ``rollback`` can undo it."""
        number = check_version(version)
        check_name(alias, "alias")
        with self._locked(name, create=False) as model_dir:
            numbers = _version_numbers(model_dir)
            if number not in numbers:
                raise NotFoundError(
                    f"model {name!r} has no version {number}; versions: {listing(numbers)}"
                )
            state = _State.read(model_dir)
            previous = state.point(alias, number)
            if previous != number:
                state.write(model_dir)
        return AliasChange(name, alias, previous, number)

    def rollback(self, name: str, alias: str = DEFAULT_ALIAS) -> AliasChange:
        """Point ``alias`` back at the version it pointed to before the last promote."""
        check_name(alias, "alias")
        with self._locked(name, create=False) as model_dir:
            state = _State.read(model_dir)
            current = state.aliases.get(alias)
            if current is None:
                raise NotFoundError(
                    f"model {name!r} has no alias {alias!r}; aliases: {listing(state.aliases)}"
                )
            numbers = set(_version_numbers(model_dir))
            past = state.history.get(alias, [])
            while past and (past[-1] not in numbers or past[-1] == current):
                past.pop()  # deleted since, or a no-op
            if not past:
                raise ConflictError(
                    f"model {name!r}: alias {alias!r} (version {current}) has no earlier"
                    " version to roll back to"
                )
            state.aliases[alias] = past.pop()
            state.write(model_dir)
            return AliasChange(name, alias, current, state.aliases[alias])

    def delete(self, name: str, version: int | str) -> None:
        """Remove a version no alias points to. It disappears in one rename; its number is
        never given out again."""
        number = check_version(version)
        with self._locked(name, create=False) as model_dir:
            numbers = _version_numbers(model_dir)
            if number not in numbers:
                raise NotFoundError(
                    f"model {name!r} has no version {number}; versions: {listing(numbers)}"
                )
            state = _State.read(model_dir)
            holding = sorted(a for a, n in state.aliases.items() if n == number)
            if holding:
                many = len(holding) > 1
                raise ConflictError(
                    f"cannot delete model {name!r} version {number}:"
                    f" {'aliases' if many else 'alias'} {', '.join(map(repr, holding))}"
                    f" {'point' if many else 'points'} to it; promote another version first"
                )
            trash = self.root / f"{_TRASH}{name}-{number}-{secrets.token_hex(4)}"
            os.rename(model_dir / str(number), trash)
            fsync_dir(model_dir)
            state.last_version = max(state.last_version, *numbers)
            for past in state.history.values():
                past[:] = [n for n in past if n != number]
            state.write(model_dir)
        shutil.rmtree(trash, ignore_errors=True)

    def clean(self) -> list[Path]:
        """Remove what killed writers left in the root: staging folders whose writer is gone
        (its lock file is free) and trash. (A model's stray ``aliases.json`` temp files go
        whenever its lock is taken.) Returns what it removed."""
        removed: list[Path] = []
        try:
            entries = os.listdir(self.root)
        except FileNotFoundError:
            return removed
        for entry in entries:
            path = self.root / entry
            if entry.startswith(_TRASH):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            elif entry.startswith(_STAGING) and not entry.endswith(".lock"):
                if self._writer_gone(path):
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
            elif entry.startswith(_STAGING) and not (self.root / entry[: -len(".lock")]).exists():
                self._writer_gone(self.root / entry[: -len(".lock")])  # frees an orphan lock
        return removed

    def _writer_gone(self, staging: Path) -> bool:
        lock = staging.with_name(staging.name + ".lock")
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            try:
                return time.time() - staging.stat().st_mtime > _ORPHAN_GRACE_S
            except FileNotFoundError:
                return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer holds it
        finally:
            os.close(fd)
        lock.unlink(missing_ok=True)
        return True

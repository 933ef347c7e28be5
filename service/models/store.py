"""The models being served, and their safe replacement.

The store serves a :class:`Catalog`: every model the registry (and ``VIGIL_MODEL_PATH``) holds,
the versions the load policy selects, and the aliases. A reload reads the registry again, reads
each selected version once, verifies and smoke-tests it off to the side (reusing versions that
are already loaded and unchanged), and swaps the whole new catalog in with one reference
assignment: a request that already took a model finishes with it. If any version that would
serve fails a check, the reload is refused and the old catalog keeps serving.

With several workers the accepted bytes and the plan of what serves are also kept in the run's
served copy (``service.models.served_copy``): that is what starting workers load, and what the
other workers follow after a reload.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from service.models import artifact, registry
from service.models.artifact import ArtifactError, Verified
from service.models.loaded import Model
from service.models.registry import DEFAULT_ALIAS, RegistryError, RegistrySnapshot, listing
from service.models.served_copy import PlannedVersion, ServedCopy, plan_digest
from service.settings import Settings

log = logging.getLogger("vigil.model")


class ModelNotFound(LookupError):
    """An unknown model, version or alias; the message lists what exists (bounded)."""


@dataclass(frozen=True)
class ModelEntry:
    """One named model as served: its loaded versions and aliases, or why it is not ready."""

    name: str
    versions: Mapping[int, Model]
    aliases: Mapping[str, int]
    registered: tuple[int, ...] = ()
    """Every version number the registry has (loaded or not)."""
    error: str | None = None
    """Why the model is not ready (its default version failed its checks), for clients."""

    @property
    def default(self) -> Model | None:
        number = self.aliases.get(DEFAULT_ALIAS)
        return None if number is None else self.versions.get(number)

    @property
    def ready(self) -> bool:
        return self.default is not None

    @property
    def kind(self) -> str | None:
        model = self.default or next(iter(self.versions.values()), None)
        return None if model is None else model.kind

    def version(self, number: int | str) -> Model:
        try:
            n = registry.check_version(number)
        except RegistryError:
            raise ModelNotFound(
                f"model {self.name!r} has no version {str(number)[:40]!r}; versions:"
                f" {listing(sorted(self.versions))}"
            ) from None
        model = self.versions.get(n)
        if model is None:
            loaded = listing(sorted(self.versions))
            hint = (
                " (registered but not loaded: see VIGIL_REGISTRY_LOAD)"
                if n in self.registered
                else ""
            )
            raise ModelNotFound(
                f"model {self.name!r} has no loaded version {n}{hint}; versions: {loaded}"
            )
        return model

    def alias(self, alias: str) -> Model:
        number = self.aliases.get(alias)
        model = None if number is None else self.versions.get(number)
        if model is None:
            raise ModelNotFound(
                f"model {self.name!r} has no alias {alias[:64]!r};"
                f" aliases: {listing(sorted(self.aliases))}"
            )
        return model


@dataclass(frozen=True)
class Catalog:
    models: Mapping[str, ModelEntry] = field(default_factory=lambda: MappingProxyType({}))
    default_name: str | None = None
    """The model the unnamed routes (``/prediction``...) serve."""
    error: str | None = "no model loaded yet"
    """Why nothing can serve, when the catalog is empty."""

    @property
    def default(self) -> Model | None:
        entry = self.models.get(self.default_name) if self.default_name else None
        return None if entry is None else entry.default

    def model(self, name: str) -> ModelEntry:
        entry = self.models.get(name)
        if entry is None:
            raise ModelNotFound(f"no model {name[:64]!r}; models: {listing(sorted(self.models))}")
        return entry

    def not_ready_reason(self) -> str | None:
        """Why the default model cannot serve, or None when it can."""
        if self.default is not None:
            return None
        if self.default_name is None:
            if not self.models:
                return self.error or "no model loaded"
            return (
                "no default model: set VIGIL_DEFAULT_MODEL to one of"
                f" {listing(sorted(self.models))}"
            )
        entry = self.models.get(self.default_name)
        if entry is None:
            return self.error or f"no model {self.default_name!r}"
        return entry.error or f"model {entry.name!r} has no default version"

    def served(self) -> list[Model]:
        return [m for e in self.models.values() for m in e.versions.values()]

    def plan_sha256(self) -> str:
        aliases = {n: dict(e.aliases) for n, e in self.models.items()}
        versions = [(m.name, m.number, m.artifact.sha256 or "") for m in self.served()]
        return plan_digest(versions, aliases)


@dataclass(frozen=True)
class ReloadOutcome:
    result: Literal["reloaded", "unchanged", "refused"]
    model_version: str | None
    """The default model's version (content hash) serving after the attempt."""
    previous_version: str | None
    reason: str | None = None
    changes: tuple[str, ...] = ()
    """What changed, one line each (``sensors@3 loaded``, ``sensors: default 2 -> 3``)."""


# What a worker is told to listen for: the telemetry subscribes to catalog swaps.
Listener = Callable[["Catalog", "Catalog"], None]


class ModelStore:
    """The served catalog. With a :class:`ServedCopy` (several workers), what a worker serves
    comes from the verified copy: a starting worker loads it, :meth:`reload` publishes to it,
    and :meth:`adopt` follows it. ``on_publish`` is called after each publish, to tell the
    other workers; ``on_swap(old, new)`` just before each swap (metrics), ``on_reload(result)``
    after each reload attempt."""

    def __init__(
        self,
        settings: Settings,
        shared: ServedCopy | None = None,
        on_publish: Callable[[], None] | None = None,
        on_swap: Listener | None = None,
        on_reload: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self._catalog = Catalog()
        self._lock = threading.Lock()  # one load at a time; serving never waits on it
        self._shared = shared
        self._on_publish = on_publish
        self._on_swap = on_swap
        self._on_reload = on_reload

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    @property
    def model(self) -> Model | None:
        """The default model's default version (what ``/prediction`` serves)."""
        return self._catalog.default

    @property
    def not_ready_reason(self) -> str | None:
        return self._catalog.not_ready_reason()

    # --- reading what to serve -----------------------------------------------------------

    def _snapshot(self) -> RegistrySnapshot:
        """The registry, plus the lone ``VIGIL_MODEL_PATH`` artifact when that file exists (or
        when there is nothing else, so that its absence is the reason given)."""
        s = self.settings
        parts: list[RegistrySnapshot] = []
        root = Path(s.registry)
        if root.is_dir():
            snap = registry.Registry(root).snapshot()
            if len(snap):
                parts.append(snap)
        path = Path(s.model_path)
        in_registry = bool(parts) and s.default_model in parts[0].models
        if in_registry and path.exists():
            log.warning(
                "the registry has a model %r: %s is not served (it would take the same name)",
                s.default_model,
                path.name,
            )
        elif path.exists() or path.is_symlink() or not parts:
            parts.append(registry.single_artifact(path, s.default_model))
        return registry.combine(*parts)

    def _default_name(self, names: list[str]) -> str | None:
        if self.settings.default_model in names:
            return self.settings.default_model
        return names[0] if len(names) == 1 else None

    # --- building a catalog off to the side --------------------------------------------

    def _build(
        self, snapshot: RegistrySnapshot, current: Catalog, *, strict: bool
    ) -> tuple[Catalog, list[PlannedVersion]]:
        """Load every selected version. ``strict``: any failing version that would serve (and
        did not already fail) refuses the whole catalog; else such a model is not ready."""
        selected = registry.select_versions(
            snapshot, self.settings.registry_load, self.settings.registry_latest
        )
        by_model: dict[str, dict[int, Model]] = {m.name: {} for m in snapshot}
        errors: dict[str, str] = {}
        planned: list[PlannedVersion] = []
        for info in selected:
            label = f"{info.model}@{info.number}"
            try:
                if info.error is not None:
                    raise ArtifactError(info.path, info.error)
                verified = artifact.read_verified(info.path)
                model = _reuse(current, info.model, info.number, verified.sha256)
                if model is None:
                    model = _build_model(verified, info.path, info.model, info.number)
            except ArtifactError as exc:
                failed_before = _failed_in(current, info.model)
                if strict and not failed_before:
                    raise ArtifactError(exc.path, f"{label}: {exc.reason}", exc.detail) from None
                log.error("%s not loaded: %s", label, exc)
                entry = snapshot.model(info.model)
                if entry.aliases.get(DEFAULT_ALIAS) == info.number:
                    errors[info.model] = f"{label}: {exc.public}"
                continue
            by_model[info.model][info.number] = model
            planned.append(PlannedVersion(info.model, info.number, verified))
        self._check_features(current, by_model, snapshot)
        entries = {
            m.name: ModelEntry(
                m.name,
                MappingProxyType(dict(sorted(by_model[m.name].items()))),
                MappingProxyType(dict(m.aliases)),
                m.numbers,
                errors.get(m.name),
            )
            for m in snapshot
        }
        names = sorted(entries)
        error = None if entries else "no model in the registry or at VIGIL_MODEL_PATH"
        return Catalog(MappingProxyType(entries), self._default_name(names), error), planned

    def _check_features(
        self, current: Catalog, new: dict[str, dict[int, Model]], snapshot: RegistrySnapshot
    ) -> None:
        """A model's default version may not change its features: its clients would break."""
        for m in snapshot:
            old_entry = current.models.get(m.name)
            old = old_entry.default if old_entry else None
            number = m.aliases.get(DEFAULT_ALIAS)
            model = new[m.name].get(number) if number is not None else None
            if old is not None and model is not None and model.feature_names != old.feature_names:
                raise ArtifactError(
                    model.source or m.name,
                    f"{model.label} takes features ({', '.join(model.feature_names)}) but the"
                    f" serving {old.label} takes ({', '.join(old.feature_names)}); clients would"
                    " break (register it under a new model name)",
                )

    def _catalog_from_plan(self, current: Catalog) -> tuple[Catalog, list[PlannedVersion]]:
        """The catalog the served copy describes (several workers)."""
        assert self._shared is not None
        plan = self._shared.current()
        assert plan is not None
        by_model: dict[str, dict[int, Model]] = {name: {} for name in plan.aliases}
        for name, number, sha, path, _ in plan.versions:
            verified = artifact.read_verified(path)
            model = _reuse(current, name, number, sha) or _build_model(verified, path, name, number)
            by_model.setdefault(name, {})[number] = model
        entries = {
            name: ModelEntry(
                name,
                MappingProxyType(dict(sorted(versions.items()))),
                MappingProxyType(dict(plan.aliases.get(name, {}))),
                tuple(sorted(versions)),
            )
            for name, versions in by_model.items()
        }
        names = sorted(entries)
        return Catalog(MappingProxyType(entries), self._default_name(names), None), []

    # --- the operations -------------------------------------------------------------------

    @contextmanager
    def _shared_lock(self) -> Iterator[None]:
        if self._shared is None:
            yield
        else:
            with self._shared.lock():
                yield

    def load(self) -> Catalog:
        """Load at start: the served copy if there is one, else the registry (then publish).
        A version that fails its checks leaves its model not ready; the others serve."""
        published = False
        with self._lock, self._shared_lock():
            current = self._catalog
            try:
                if self._shared is not None and self._shared.current() is not None:
                    catalog, _ = self._catalog_from_plan(current)
                else:
                    catalog, planned = self._build(self._snapshot(), current, strict=False)
                    published = self._publish(catalog, planned)
            except (ArtifactError, RegistryError, OSError, ValueError) as exc:
                reason = exc.public if isinstance(exc, ArtifactError) else _public(exc)
                log.error("models not loaded: %s", exc)
                catalog = Catalog(error=reason)
            self._install(current, catalog)
        if published:
            self._notify()
        return catalog

    def reload(self) -> ReloadOutcome:
        """Serve the registry as it is now if every version that would serve passes every
        check; never raises. With several workers, the worker that reloads is the only one
        that counts it."""
        with self._lock, self._shared_lock():
            current = self._catalog
            previous = current.default.version if current.default else None
            try:
                catalog, planned = self._build(self._snapshot(), current, strict=True)
                # Unchanged: every model serves the same versions under the same aliases. A
                # version registered but not loaded changes nothing served, yet the listings
                # (/models' registered_versions) should show it: the catalog is still swapped.
                unchanged = catalog.plan_sha256() == current.plan_sha256()
                if not unchanged:
                    self._publish(catalog, planned)
            except (ArtifactError, RegistryError, OSError, ValueError) as exc:
                reason = exc.public if isinstance(exc, ArtifactError) else _public(exc)
                log.error("reload refused, still serving %s: %s", previous, exc)
                self._count("refused")
                return ReloadOutcome("refused", previous, previous, reason)
            if unchanged and catalog.default_name is not None and catalog.default is None:
                # Nothing new, and the default model still fails its checks: that is no
                # success for whoever asked (a 409 with the reason, as before the registry).
                reason = catalog.not_ready_reason()
                log.error("reload refused, still not ready: %s", reason)
                self._count("refused")
                return ReloadOutcome("refused", previous, previous, reason)
            if unchanged:
                if {n: e.registered for n, e in current.models.items()} != {
                    n: e.registered for n, e in catalog.models.items()
                }:
                    self._catalog = _with_registered(current, catalog)
                self._count("unchanged")
                return ReloadOutcome("unchanged", previous, previous)
            changes = _changes(current, catalog)
            self._install(current, catalog)
            self._count("reloaded")
        self._notify()
        new = catalog.default.version if catalog.default else None
        return ReloadOutcome("reloaded", new, previous, None, changes)

    def adopt(self) -> None:
        """Serve the served copy if another worker moved it; not counted as a reload."""
        if self._shared is None:
            return
        with self._lock, self._shared.lock():
            plan = self._shared.current()
            current = self._catalog
            if plan is None or plan.sha256 == current.plan_sha256():
                return
            try:
                catalog, _ = self._catalog_from_plan(current)
            except (ArtifactError, OSError, ValueError) as exc:
                log.error("could not follow the other workers' models, still serving: %s", exc)
                return
            self._install(current, catalog)

    def _publish(self, catalog: Catalog, planned: list[PlannedVersion]) -> bool:
        """Keep the verified bytes for the other and future workers (several workers only)."""
        if self._shared is None:
            return False
        aliases = {n: dict(e.aliases) for n, e in catalog.models.items()}
        try:
            self._shared.publish(planned, aliases)
        except OSError as exc:
            raise ArtifactError(
                "served copy",
                f"could not keep a verified copy for the workers ({artifact.os_reason(exc)})",
                detail=str(exc),
            ) from None
        return True

    def _notify(self) -> None:
        if self._on_publish is not None:
            self._on_publish()

    def _count(self, result: str) -> None:
        if self._on_reload is not None:
            self._on_reload(result)

    def _install(self, old: Catalog, new: Catalog) -> None:
        if self._on_swap is not None:
            self._on_swap(old, new)  # before the swap: a request must find its metrics ready
        self._catalog = new
        for change in _changes(old, new):
            log.info("%s", change)


def _build_model(verified: Verified, source: Path, name: str, number: int) -> Model:
    """Unpickle and check verified bytes; every failure becomes an ArtifactError whose public
    reason holds no exception text (which may name server paths)."""
    try:
        return Model(artifact.from_verified(verified), source=source, name=name, number=number)
    except ArtifactError:
        raise
    except Exception as exc:  # e.g. a pickle of another library version
        raise ArtifactError(
            verified.path, f"failed its checks: {type(exc).__name__}", detail=str(exc)
        ) from None


def _with_registered(current: Catalog, new: Catalog) -> Catalog:
    """``current`` (the very models and metrics it serves) with ``new``'s registered lists."""
    models = {
        name: replace(entry, registered=new.models[name].registered)
        if name in new.models
        else entry
        for name, entry in current.models.items()
    }
    return replace(current, models=MappingProxyType(models))


def _reuse(current: Catalog, name: str, number: int, sha256: str) -> Model | None:
    entry = current.models.get(name)
    model = entry.versions.get(number) if entry else None
    return model if model is not None and model.artifact.sha256 == sha256 else None


def _failed_in(current: Catalog, name: str) -> bool:
    entry = current.models.get(name)
    return entry is not None and entry.error is not None


def _public(exc: Exception) -> str:
    """A registry or settings error's message; an OSError's without its path."""
    if isinstance(exc, OSError):
        return f"the registry cannot be read ({artifact.os_reason(exc)})"
    return str(exc)


def _changes(old: Catalog, new: Catalog) -> tuple[str, ...]:
    lines: list[str] = []
    for name in sorted(set(old.models) | set(new.models)):
        a, b = old.models.get(name), new.models.get(name)
        before = {n: m.version for n, m in a.versions.items()} if a else {}
        after = {n: m.version for n, m in b.versions.items()} if b else {}
        for n in sorted(set(after) | set(before)):
            if n not in before:
                lines.append(f"{name}@{n} loaded ({b.versions[n].kind}, {after[n]})")
            elif n not in after:
                lines.append(f"{name}@{n} unloaded")
            elif before[n] != after[n]:  # a lone VIGIL_MODEL_PATH file replaced in place
                lines.append(f"{name}@{n} replaced ({before[n]} -> {after[n]})")
        aliases_a = dict(a.aliases) if a else {}
        aliases_b = dict(b.aliases) if b else {}
        for alias in sorted(set(aliases_a) | set(aliases_b)):
            if aliases_a.get(alias) != aliases_b.get(alias):
                lines.append(f"{name}: {alias} {aliases_a.get(alias)} -> {aliases_b.get(alias)}")
    return tuple(lines)

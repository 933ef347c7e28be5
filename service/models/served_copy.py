"""The verified copy of what a multi-worker service is serving.

With several workers, the registry on disk is not what a worker should load when it starts:
it may hold a version a reload refused, or an alias moved that nobody has reloaded yet. So the
bytes the workers accepted (hash-checked, unpickled, smoke-tested), and the plan of which model
and version each one is, are copied into a private folder the supervisor creates for the run.
Every worker that starts, and every worker told that the service moved, loads that copy. A
reload is the only thing that changes it.

Layout: ``<root>/<sha256>/<file>`` and ``<file>.json`` per artifact, and ``<root>/plan.json``
(the served models, their versions, aliases and hashes), replaced atomically. Every read and
write happens under an exclusive ``flock`` on ``<root>/.lock``, which also makes "verify the
registry, then publish it" one step across processes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.data.atomic import atomic_write_bytes
from service.models.artifact import Verified, manifest_path

PLAN = "plan.json"


@dataclass(frozen=True)
class PlannedVersion:
    """One served version: where it sits in the registry, and its verified bytes."""

    model: str
    number: int
    verified: Verified


@dataclass(frozen=True)
class Plan:
    """What the workers serve: each model's versions (with their copies) and aliases."""

    versions: tuple[tuple[str, int, str, Path, str], ...]
    """(model, number, sha256, path of the copy, the original file's base name)."""
    aliases: dict[str, dict[str, int]]
    sha256: str
    """A hash of the whole plan: two workers serve the same thing when theirs are equal."""


class ServedCopy:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the copy exclusively, across the workers' processes (and threads: each call
        opens its own file description)."""
        # Made again if something (a tmp cleaner) removed it: then there is no copy, and the
        # next worker to load publishes one.
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def current(self) -> Plan | None:
        """The served plan; None before the first one. Call under :meth:`lock`."""
        try:
            raw = (self.root / PLAN).read_bytes()
        except FileNotFoundError:
            return None
        data = json.loads(raw)
        versions = tuple(
            (
                v["model"],
                int(v["number"]),
                v["sha256"],
                self.root / v["sha256"] / v["file"],
                v["file"],
            )
            for v in data["versions"]
        )
        return Plan(versions, data["aliases"], data["sha256"])

    def publish(
        self, versions: Sequence[PlannedVersion], aliases: dict[str, dict[str, int]]
    ) -> Plan:
        """Make ``versions`` (with ``aliases``) what the workers serve. Call under :meth:`lock`.
        Writes the exact bytes that were verified, never the registry's files."""
        keep: set[str] = set()
        entries: list[dict[str, Any]] = []
        for planned in versions:
            verified = planned.verified
            name = verified.path.name
            folder = self.root / verified.sha256
            keep.add(verified.sha256)
            if not (folder / name).is_file():
                staging = Path(tempfile.mkdtemp(prefix=".new-", dir=self.root))
                try:
                    (staging / name).write_bytes(verified.data)
                    manifest_path(staging / name).write_bytes(verified.manifest_bytes)
                    shutil.rmtree(folder, ignore_errors=True)
                    os.rename(staging, folder)
                except BaseException:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
            entries.append(
                {
                    "model": planned.model,
                    "number": planned.number,
                    "sha256": verified.sha256,
                    "file": name,
                }
            )
        body = {"versions": entries, "aliases": aliases}
        digest = plan_digest([(e["model"], e["number"], e["sha256"]) for e in entries], aliases)
        atomic_write_bytes(
            self.root / PLAN, json.dumps({**body, "sha256": digest}, sort_keys=True).encode()
        )
        for old in self.root.iterdir():  # nobody reads them: readers hold the lock
            if old.is_dir() and not old.is_symlink() and old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)
        plan = self.current()
        assert plan is not None
        return plan


def plan_digest(
    versions: Sequence[tuple[str, int, str]], aliases: dict[str, dict[str, int]]
) -> str:
    """The plan hash of a catalog: (model, number, sha256) per version, and the aliases."""
    entries = sorted([m, n, s] for m, n, s in versions)
    body = {"versions": entries, "aliases": aliases}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

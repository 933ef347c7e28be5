"""The verified copy of the artifact a multi-worker service is serving.

With several workers, the live model path is not what a worker should load when it starts:
the file there may be one a reload refused, or a new model nobody has reloaded yet. So the
bytes a worker accepted (hash-checked, unpickled, smoke-tested) are copied, with their
manifest, into a private folder the supervisor creates for the run, and every worker that
starts, and every worker told that the service moved, loads that copy. A reload is the only
thing that changes it.

Layout: ``<root>/<sha256>/<name>`` and ``<name>.json``, and a symlink ``<root>/current`` to
``<sha256>/<name>``, replaced atomically. Every read and write happens under an exclusive
``flock`` on ``<root>/.lock``, which also makes "verify the live file, then publish it" one
step across processes.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.models.artifact import Verified, manifest_path


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

    def current(self) -> tuple[str, Path] | None:
        """The served artifact's sha256 and the path of its copy; None before the first one.
        Call under :meth:`lock`."""
        try:
            target = os.readlink(self.root / "current")
        except FileNotFoundError:
            return None
        sha256, _, name = target.partition("/")
        return sha256, self.root / sha256 / name

    def publish(self, verified: Verified) -> Path:
        """Make ``verified`` the served artifact; returns its copy's path. Call under
        :meth:`lock`. Writes the exact bytes that were verified, never the live file."""
        name = verified.path.name
        folder = self.root / verified.sha256
        if not folder.is_dir():
            staging = Path(tempfile.mkdtemp(prefix=".new-", dir=self.root))
            try:
                (staging / name).write_bytes(verified.data)
                manifest_path(staging / name).write_bytes(verified.manifest_bytes)
                os.rename(staging, folder)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        link = self.root / ".current.new"
        link.unlink(missing_ok=True)
        link.symlink_to(f"{verified.sha256}/{name}")
        os.replace(link, self.root / "current")
        for old in self.root.iterdir():  # nobody reads them: readers hold the lock
            if old.is_dir() and not old.is_symlink() and old.name != verified.sha256:
                shutil.rmtree(old, ignore_errors=True)
        return folder / name

"""What an attacker or a bad day does to a model file, for the artifact and reload tests."""

from __future__ import annotations

import os
import pickle
import shutil
import threading
import time
from pathlib import Path

import pytest


class Marker:
    """Unpickling this creates a folder: proof that code from the pickle ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def evil_pickle(marker: Path, size: int) -> bytes:
    """A pickle that creates ``marker``, padded to ``size`` bytes (the unpickler stops at its
    end) so that a size check passes and only the hash check can refuse it."""
    data = pickle.dumps(Marker(marker))
    assert len(data) <= size
    return data + b"\0" * (size - len(data))


class Swapper:
    """Replaces ``path`` by rename, as fast as it can, alternating a good artifact file and a
    same-size pickle that creates ``marker``: the race between checking a file and reading it
    again. Use as a context manager; it stops on exit."""

    def __init__(self, path: Path, marker: Path, stage: Path) -> None:
        stage.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.good = stage / "good"
        shutil.copyfile(path, self.good)  # a copy, not a link: rename() of a link is a no-op
        self.evil = stage / "evil"
        self.evil.write_bytes(evil_pickle(marker, self.good.stat().st_size))
        self.swaps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        tmp = self.path.with_name(".swap")
        deadline = time.monotonic() + 60  # bounded even if a test forgets to stop it
        while not self._stop.is_set() and time.monotonic() < deadline:
            for src in (self.good, self.evil):
                os.link(src, tmp)
                os.replace(tmp, self.path)
                self.swaps += 1

    def __enter__(self) -> Swapper:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        os.replace(self.good, self.path)


def make_unreadable(path: Path) -> None:
    """Leave ``path`` a regular file that cannot be opened for reading."""
    if os.geteuid() != 0:
        path.chmod(0)
        return
    # root reads any file whatever its mode, but not this one (write-only, even for root).
    write_only = Path("/proc/sys/vm/drop_caches")
    if not write_only.is_file():
        pytest.skip("running as root without /proc/sys/vm/drop_caches")
    path.unlink()
    path.symlink_to(write_only)

"""Atomic file writes: a reader sees the old file or the new one, never a part of either.

The pattern is write a temp file beside the target (same filesystem, so ``rename`` is atomic),
fsync it, rename it over the target, then fsync the folder so the rename itself survives a
power cut. A crash at any point leaves the old file and at worst a ``.<name>.*.tmp`` file,
which readers never look at.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO


def fsync_dir(path: str | Path) -> None:
    """Make a folder's entries (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | Path) -> None:
    """fsync every file and folder under ``root`` (and ``root``), deepest first."""
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


@contextmanager
def atomic_file(path: str | Path, mode: int = 0o644, *, text: bool = False) -> Iterator[IO]:
    """A file object whose content replaces ``path`` only once the block ends without error
    (``text``: UTF-8 text with no newline translation, as the csv module wants)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        opened = os.fdopen(fd, "w", newline="", encoding="utf-8") if text else os.fdopen(fd, "wb")
        with opened as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], mode: int = 0o644) -> None:
    """Replace ``path`` with what ``write`` writes to the file object it is given."""
    with atomic_file(path, mode) as fh:
        write(fh)


def atomic_write_bytes(path: str | Path, data: bytes, mode: int = 0o644) -> None:
    atomic_write(path, lambda fh: fh.write(data), mode)

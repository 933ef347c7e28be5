"""The registry under real concurrency: writer processes, a reader, and kill -9 mid-write."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from service.models.registry import Registry
from tests.models.conftest import assert_complete
from tests.support import REPO, wait_for

pytestmark = pytest.mark.slow


def start_writer(root: Path, model_path: Path, name: str, count: int, *flags: str):
    return subprocess.Popen(
        [sys.executable, "-m", "tests.models.writer", str(root), str(model_path), name,
         str(count), *flags],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def staging_dirs(root: Path) -> list[str]:
    try:
        return [e for e in os.listdir(root) if e.startswith(".staging-") and "." not in e[1:]]
    except FileNotFoundError:
        return []


def test_concurrent_writers_get_distinct_numbers(tmp_path, model_path):
    root = tmp_path / "registry"
    writers = [start_writer(root, model_path, "alpha", 10) for _ in range(3)]
    got: list[int] = []
    for w in writers:
        out, err = w.communicate(timeout=120)
        assert w.returncode == 0, err
        got.extend(int(n) for n in out.split())
    assert sorted(got) == list(range(1, 31)), "two writers got the same number"
    snap = Registry(root).snapshot()
    assert snap.model("alpha").numbers == tuple(range(1, 31))
    assert_complete(snap)


def test_a_reader_never_sees_half_a_version(tmp_path, model_path):
    """A reader snapshots in a loop while another process adds versions, moves aliases and
    deletes old versions: every version it sees loads and verifies, every alias resolves."""
    root = tmp_path / "registry"
    registry = Registry(root)
    writer = start_writer(root, model_path, "alpha", 20, "--churn")
    verified: set[Path] = set()
    seen_counts: set[int] = set()
    snapshots = 0
    try:
        while writer.poll() is None:
            snap = registry.snapshot()
            assert_complete(snap, verified)
            snapshots += 1
            if len(snap):
                seen_counts.add(snap.model("alpha").numbers[-1])
    finally:
        out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    assert [int(n) for n in out.split()] == list(range(1, 21))
    # the reader really ran alongside the writer, not only before or after it
    assert len(seen_counts) >= 3, (snapshots, seen_counts)
    final = registry.snapshot()
    assert_complete(final)
    assert final.model("alpha").numbers[-1] == 20


@pytest.mark.parametrize("round_", range(4))
def test_a_writer_killed_at_a_random_point_leaves_nothing_visible(
    tmp_path, model_path, save, round_
):
    root = tmp_path / "registry"
    registry = Registry(root)
    writer = start_writer(root, model_path, "alpha", 0, "--churn")
    try:
        # once it has written a version and is inside the next write, let a random number of
        # directory listings pass, so the kill lands anywhere from mid-write to after the rename
        # (any version: with --churn the first may already be deleted when this looks)
        wait_for(lambda: any(e.isdigit() for e in os.listdir(root / "alpha")), 60,
                 "the writer's first version")  # fmt: skip
        wait_for(lambda: bool(staging_dirs(root)), 60, "a write in progress", interval=0)
        for _ in range(random.randrange(0, 400)):
            os.listdir(root)
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait(30)
    assert writer.returncode == -signal.SIGKILL

    snap = registry.snapshot()
    assert_complete(snap)
    before = snap.model("alpha")
    assert before.default is not None
    assert registry.register("alpha", save).number == max(before.numbers) + 1
    assert staging_dirs(root) == [], "the next writer left the dead writer's staging folder"
    assert_complete(registry.snapshot())


def test_a_writer_killed_inside_its_write_callback_leaves_nothing(tmp_path, model_path, save):
    root = tmp_path / "registry"
    writer = start_writer(root, model_path, "alpha", 1, "--die-mid-write")
    writer.communicate(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    assert len(staging_dirs(root)) == 1, "the half-written staging folder should be left over"
    registry = Registry(root)
    assert len(registry.snapshot()) == 0

    v = registry.register("alpha", save)
    assert (v.number, registry.model("alpha").default.number) == (1, 1)
    assert staging_dirs(root) == []
    assert_complete(registry.snapshot())

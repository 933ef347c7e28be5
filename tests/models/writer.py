"""A registry writer in its own process, for the concurrency and crash tests.

``python -m tests.models.writer ROOT MODEL_PATH NAME COUNT [--churn] [--die-mid-write]``
registers COUNT versions of NAME (COUNT 0: until killed), printing each number as it lands.
``--churn`` also moves aliases and deletes old versions between writes; ``--die-mid-write``
writes half an artifact and then SIGKILLs itself inside the write callback.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import signal
from pathlib import Path

from service.models import artifact
from service.models.registry import ConflictError, Registry


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("root", type=Path)
    p.add_argument("model_path", type=Path)
    p.add_argument("name")
    p.add_argument("count", type=int)
    p.add_argument("--churn", action="store_true")
    p.add_argument("--die-mid-write", action="store_true")
    args = p.parse_args()
    trained = artifact.load(args.model_path)
    registry = Registry(args.root)

    def save(path: Path) -> None:
        artifact.save(trained, path)

    def half_then_die(path: Path) -> None:
        artifact.save(trained, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)

    rounds = itertools.count() if args.count == 0 else range(args.count)
    for i in rounds:
        write = half_then_die if args.die_mid_write else save
        v = registry.register(args.name, write, promote=args.churn and i % 3 == 2)
        print(v.number, flush=True)
        if args.churn:
            model = registry.model(args.name)
            registry.promote(args.name, model.numbers[len(model.numbers) // 2], "champion")
            if i % 4 == 3:
                with contextlib.suppress(ConflictError):  # nothing to roll back to yet
                    registry.rollback(args.name)
            for old in model.numbers[:-4]:
                with contextlib.suppress(ConflictError):  # an alias holds it
                    registry.delete(args.name, old)


if __name__ == "__main__":
    main()

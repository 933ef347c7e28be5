"""``models list|show|promote|rollback|delete``: manage the registry from the command line.

Each ``cmd_*`` takes parsed arguments and returns the exit status: 0 done, 2 refused (unknown
model or version, invalid name, an aliased version to delete, nothing to roll back to), with
the reason on stderr. ``add_arguments`` builds the subcommands on any parser, so
``python -m service models ...`` and ``python -m service.cli.models ...`` parse alike.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.models.registry import (
    DEFAULT_ALIAS,
    ModelInfo,
    Registry,
    RegistryError,
    VersionInfo,
)

Handler = Callable[[argparse.Namespace], int]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--registry`` and the subcommands (each sets ``args.handler``) to ``parser``."""
    parser.add_argument(
        "--registry", type=Path, help="registry folder (default: VIGIL_REGISTRY, else models)"
    )
    sub = parser.add_subparsers(dest="models_command", required=True, metavar="COMMAND")

    ls = sub.add_parser("list", help="every model: kind, versions, aliases")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(handler=cmd_list)

    show = sub.add_parser("show", help="one model's versions, aliases and alias history")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=cmd_show)

    promote = sub.add_parser("promote", help="point an alias (default: default) at a version")
    promote.add_argument("name")
    promote.add_argument("version")
    promote.add_argument("--alias", default=DEFAULT_ALIAS)
    promote.set_defaults(handler=cmd_promote)

    rollback = sub.add_parser("rollback", help="move an alias back to its previous version")
    rollback.add_argument("name")
    rollback.add_argument("--alias", default=DEFAULT_ALIAS)
    rollback.set_defaults(handler=cmd_rollback)

    delete = sub.add_parser("delete", help="delete a version that no alias points to")
    delete.add_argument("name")
    delete.add_argument("version")
    delete.set_defaults(handler=cmd_delete)


def _registry(args: argparse.Namespace) -> Registry:
    if args.registry is not None:
        return Registry(args.registry)
    from pydantic import ValidationError

    from service.settings import Settings

    try:
        return Registry(Settings().registry)
    except ValidationError as exc:
        raise RegistryError(f"invalid settings:\n{exc}") from None


def _version_json(v: VersionInfo, model: ModelInfo) -> dict[str, Any]:
    return {
        "version": v.number,
        "model_version": v.model_version,
        "kind": v.kind,
        "aliases": list(model.aliases_of(v.number)),
        "path": str(v.path),
        "sha256": v.sha256,
        "error": v.error,
        "metadata": dict(v.metadata),
    }


def _model_json(m: ModelInfo, *, versions: bool) -> dict[str, Any]:
    default = m.default
    out: dict[str, Any] = {
        "name": m.name,
        "kind": (default or m.versions[-1]).kind,
        "default_version": default.number if default else None,
        "aliases": dict(m.aliases),
        "versions": [v.number for v in m.versions],
    }
    if versions:
        out["history"] = {k: list(v) for k, v in m.history.items()}
        out["versions"] = [_version_json(v, m) for v in m.versions]
    return out


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _ranges(numbers: tuple[int, ...]) -> str:
    """1,2,3,5 -> '1-3, 5': short even for a model with hundreds of versions."""
    parts: list[tuple[int, int]] = []
    for n in numbers:
        if parts and parts[-1][1] == n - 1:
            parts[-1] = (parts[-1][0], n)
        else:
            parts.append((n, n))
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in parts)


def cmd_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    snap = registry.snapshot()
    if args.json:
        print(json.dumps({"models": [_model_json(m, versions=False) for m in snap]}, indent=2))
        return 0
    if not len(snap):
        print(f"no models in {registry.root}")
        return 0
    rows = [["NAME", "KIND", "DEFAULT", "VERSIONS", "ALIASES"]]
    for m in snap:
        other = ", ".join(f"{a}={n}" for a, n in sorted(m.aliases.items()) if a != DEFAULT_ALIAS)
        default = m.default
        rows.append(
            [
                m.name,
                (default or m.versions[-1]).kind,
                str(default.number) if default else "-",
                _ranges(m.numbers),
                other or "-",
            ]
        )
    print(_table(rows))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    model = _registry(args).model(args.name)
    if args.json:
        print(json.dumps(_model_json(model, versions=True), indent=2))
        return 0
    print(f"model {model.name}")
    for alias, number in sorted(model.aliases.items()):
        past = model.history.get(alias, ())
        before = f" (before: {', '.join(map(str, past))})" if past else ""
        print(f"  {alias} -> {number}{before}")
    rows = [["VERSION", "MODEL_VERSION", "KIND", "ROWS", "FEATURES", "CREATED", "ALIASES"]]
    for v in model.versions:
        meta = v.metadata
        rows.append(
            [
                str(v.number),
                v.model_version or "-",
                v.kind,
                str(meta.get("n_training_rows", "-")),
                ",".join(meta.get("feature_names", [])) or "-",
                str(meta.get("created_at", "-")),
                ",".join(model.aliases_of(v.number)) or "-",
            ]
        )
        if v.error:
            rows[-1][1] = f"BROKEN: {v.error}"
    print(_table(rows))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    change = _registry(args).promote(args.name, args.version, args.alias)
    if change.previous == change.current:
        print(f"{change.model}: {change.alias} already points to version {change.current}")
    else:
        before = "nothing" if change.previous is None else f"version {change.previous}"
        print(f"{change.model}: {change.alias} -> version {change.current} (was {before})")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    change = _registry(args).rollback(args.name, args.alias)
    print(
        f"{change.model}: {change.alias} -> version {change.current}"
        f" (rolled back from version {change.previous})"
    )
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    _registry(args).delete(args.name, args.version)
    print(f"{args.name}: deleted version {args.version}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the chosen subcommand; a refused operation is exit 2 with the reason on stderr."""
    try:
        return args.handler(args)
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.cli.models", description="Manage Vigil's model registry"
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

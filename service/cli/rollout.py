"""``rollout``: move a model's default alias and wait until every replica serves it.

Promotes ``--version`` in the shared registry, asks each replica to reload (POST
/admin/reload with the admin token), then polls each replica's ``GET /models/NAME`` until its
default version is the new one. The replicas are ``--urls`` or the addresses in a Prometheus
file_sd ``--targets`` file (what monitor/localstack.py writes). Exit status: 0 every replica
serves the version, 1 some do not within ``--timeout`` (named on stderr), 2 bad arguments or
a registry that refuses the change.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import requests

POLL_S = 0.2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="the model")
    parser.add_argument("--version", required=True, help="the version to make the default")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--urls", help="the replicas, comma-separated (http://HOST:PORT,...)")
    where.add_argument("--targets", type=Path, help="a Prometheus file_sd targets file (JSON)")
    parser.add_argument("--registry", help="registry folder (default: VIGIL_REGISTRY, else models)")
    parser.add_argument("--token", help="admin token (default: VIGIL_ADMIN_TOKEN)")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for every replica"
    )


def replica_urls(args: argparse.Namespace) -> list[str]:
    """The replicas' base URLs, from --urls or the targets file."""
    if args.urls:
        urls = [u.strip().rstrip("/") for u in args.urls.split(",") if u.strip()]
    else:
        try:
            groups = json.loads(args.targets.read_text())
            targets = [t for group in groups for t in group["targets"]]
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ValueError(
                f"--targets {args.targets}: not a file_sd targets file: {exc}"
            ) from None
        urls = [t if "://" in t else f"http://{t}" for t in targets]
    if not urls:
        raise ValueError("no replicas given")
    return urls


def _default_version(session: requests.Session, url: str, name: str) -> str:
    """What a replica serves as NAME's default (a version number), or why it cannot say."""
    try:
        r = session.get(f"{url}/models/{name}", timeout=5)
    except requests.RequestException as exc:
        return f"unreachable ({type(exc).__name__})"
    if r.status_code != 200:
        return f"HTTP {r.status_code}"
    return str(r.json().get("version"))  # the default version, which it serves


def _reload(session: requests.Session, url: str) -> str | None:
    """Ask a replica to reload; None if it did, else why not."""
    try:
        r = session.post(f"{url}/admin/reload", timeout=120)
    except requests.RequestException as exc:
        return f"reload: unreachable ({type(exc).__name__})"
    if r.status_code != 200:
        return f"reload: HTTP {r.status_code} {r.text[:200]}"
    return None


def run(args: argparse.Namespace) -> int:
    from service.cli.common import settings_value
    from service.models.registry import Registry, RegistryError

    try:
        urls = replica_urls(args)
        root = args.registry or settings_value("registry")
        change = Registry(root).promote(args.name, args.version)
    except (ValueError, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    want = str(change.current)
    print(f"{args.name}: default version {change.previous} -> {want} in {root}")
    token = args.token or settings_value("admin_token")
    if hasattr(token, "get_secret_value"):
        token = token.get_secret_value()
    session = requests.Session()
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    problems = {url: _reload(session, url) for url in urls}
    deadline = time.monotonic() + args.timeout
    serving: dict[str, str] = {}
    while True:
        serving = {url: _default_version(session, url, args.name) for url in urls}
        laggards = [url for url in urls if serving[url] != want]
        if not laggards or time.monotonic() > deadline:
            break
        for url in laggards:  # a replica that missed the reload (restarting) gets another
            if problems.get(url):
                problems[url] = _reload(session, url)
        time.sleep(POLL_S)
    if laggards:
        print(
            f"error: {len(laggards)} of {len(urls)} replicas do not serve {args.name} version"
            f" {want} after {args.timeout:g}s:",
            file=sys.stderr,
        )
        for url in laggards:
            why = f"; {problems[url]}" if problems.get(url) else ""
            print(f"  {url}: serves {serving[url]}{why}", file=sys.stderr)
        return 1
    print(f"{args.name} version {want} is served by all {len(urls)} replicas")
    return 0

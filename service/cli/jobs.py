"""``jobs submit|status|list``: training jobs on a running service, over its HTTP API.

The admin token is ``--token`` or ``VIGIL_ADMIN_TOKEN``. Exit status: 0 done (with
``--wait``: the job succeeded), 1 the job failed or was canceled, 2 the request was refused
or the service could not be reached (the reason on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import requests

POLL_S = 0.5
TIMEOUT_S = 30.0


class Refused(Exception):
    """The service said no, or could not be reached; the message says why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--url``, ``--token`` and the subcommands (each sets ``args.handler``)."""
    parser.add_argument("--url", help="the service (default: http://127.0.0.1:VIGIL_PORT)")
    parser.add_argument("--token", help="admin token (default: VIGIL_ADMIN_TOKEN)")
    sub = parser.add_subparsers(dest="jobs_command", required=True, metavar="COMMAND")

    s = sub.add_parser("submit", help="upload a CSV and train a new version of a model")
    s.add_argument("--url", dest="sub_url", help=argparse.SUPPRESS)
    s.add_argument("--name", required=True, help="the model to register a version of")
    s.add_argument("--data", required=True, type=Path, help="CSV with a header of features")
    s.add_argument("--detector", default="iforest", help="detector kind (default iforest)")
    s.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    s.add_argument("--label-column", help="a column to leave out (a label)")
    s.add_argument("--exclude", action="append", default=[], help="column to skip (repeatable)")
    s.add_argument("--seed", type=int, help="seed for every random choice (default 42)")
    s.add_argument("--promote", action="store_true", help="make the new version the default")
    s.add_argument("--idempotency-key", help="retrying with the same key returns the same job")
    s.add_argument("--wait", action="store_true", help="wait for the outcome, showing progress")
    s.set_defaults(handler=cmd_submit)

    st = sub.add_parser("status", help="one job, as JSON")
    st.add_argument("--url", dest="sub_url", help=argparse.SUPPRESS)
    st.add_argument("id")
    st.add_argument("--wait", action="store_true", help="wait until it ends")
    st.set_defaults(handler=cmd_status)

    ls = sub.add_parser("list", help="jobs, newest first")
    ls.add_argument("--url", dest="sub_url", help=argparse.SUPPRESS)
    ls.add_argument("--model", help="only this model's")
    ls.add_argument("--status", help="queued, running, succeeded, failed or canceled")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(handler=cmd_list)


class Client:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kw: Any) -> tuple[dict[str, Any], int]:
        try:
            r = self.session.request(method, self.url + path, timeout=TIMEOUT_S, **kw)
        except requests.RequestException as exc:
            raise Refused(f"cannot reach {self.url}: {type(exc).__name__}") from None
        try:
            body = r.json()
        except ValueError:
            body = {"detail": r.text[:200]}
        if r.status_code >= 400:
            detail = body.get("detail", body) if isinstance(body, dict) else body
            raise Refused(f"{r.status_code}: {detail}")
        return body, r.status_code


def _client(args: argparse.Namespace) -> Client:
    from service.settings import get_settings

    settings = get_settings()
    url = args.sub_url or args.url or f"http://127.0.0.1:{settings.port}"
    token = args.token
    if token is None and settings.admin_token is not None:
        token = settings.admin_token.get_secret_value()
    return Client(url, token)


def _value(text: str) -> Any:
    """``10`` -> 10, ``true`` -> True, ``auto`` -> "auto": JSON where it is JSON."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, int | float | bool) or value is None else text


def _params(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise Refused(f"--param {pair!r}: write it NAME=VALUE")
        out[name.strip()] = _value(value.strip())
    return out


def _line(job: dict[str, Any]) -> str:
    status = job["status"]
    if status == "succeeded":
        registered = f"{job['model']} version {job['version']} ({job['model_version']})"
        return f"job {job['id']} succeeded: {registered}"
    if status == "failed":
        return f"job {job['id']} failed: {job.get('error')}"
    rows = f", {job['rows']} rows" if job.get("rows") else ""
    return f"job {job['id']} {status}: {job['progress']:.0%}{rows}"


def _wait(client: Client, job: dict[str, Any]) -> int:
    shown = ""
    while job["status"] in ("queued", "running"):
        line = _line(job)
        if line != shown:
            print(line, file=sys.stderr, flush=True)
            shown = line
        time.sleep(POLL_S)
        job, _ = client.call("GET", f"/training-jobs/{job['id']}")
    print(_line(job))
    return 0 if job["status"] == "succeeded" else 1


def cmd_submit(args: argparse.Namespace) -> int:
    client = _client(args)
    fields: dict[str, str] = {
        "detector": args.detector,
        "params": json.dumps(_params(args.param)),
        "promote": "true" if args.promote else "false",
    }
    if args.label_column:
        fields["label_column"] = args.label_column
    if args.exclude:
        fields["exclude"] = ",".join(args.exclude)
    if args.seed is not None:
        fields["seed"] = str(args.seed)
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    try:
        fh = args.data.open("rb")
    except OSError as exc:
        raise Refused(f"cannot read {args.data}: {exc.strerror or exc}") from None
    with fh:
        job, _ = client.call(
            "POST",
            f"/models/{args.name}/training-jobs",
            data=fields,
            files={"data": (args.data.name, fh, "text/csv")},
            headers=headers,
        )
    print(f"queued job {job['id']} for model {job['model']} ({job['detector']})", flush=True)
    return _wait(client, job) if args.wait else 0


def cmd_status(args: argparse.Namespace) -> int:
    client = _client(args)
    job, _ = client.call("GET", f"/training-jobs/{args.id}")
    if args.wait:
        return _wait(client, job)
    print(json.dumps(job, indent=2))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    client = _client(args)
    query = {"model": args.model, "status": args.status, "limit": args.limit}
    page, _ = client.call("GET", "/training-jobs", params={k: v for k, v in query.items() if v})
    if args.json:
        print(json.dumps(page, indent=2))
        return 0
    print(f"{'ID':26}  {'MODEL':16} {'DETECTOR':11} {'STATUS':9} {'CREATED':24} RESULT")
    for job in page["jobs"]:
        result = f"version {job['version']}" if job["status"] == "succeeded" else ""
        result = job.get("error") or result
        print(
            f"{job['id']:26}  {job['model']:16} {job['detector']:11} {job['status']:9}"
            f" {job['created_at']:24} {result}"
        )
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return args.handler(args)
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.cli.jobs", description="Training jobs on a running Vigil service"
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

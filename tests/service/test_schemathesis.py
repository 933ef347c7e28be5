"""Schemathesis against the live service: /openapi.json says what the service accepts and answers.

Every check schemathesis has, over its examples, coverage and fuzzing phases (stateful needs
links between operations, which the API has none of), with and without an admin token. The only
setting changed from schemathesis' defaults is in ``schemathesis.toml``: 413 counts as refusing a
batch over ``maxItems``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support import metric, scrape, start_server

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).with_name("schemathesis.toml")
TOKEN = "schemathesis-admin-token"


# fmt: off
ST_RUN = [
    "--checks", "all",
    "--phases", "examples,coverage,fuzzing",
    "--max-examples", "50",  # per operation and phase: about 300 requests, 10 s
    "--seed", "1",  # the same cases on every run; a failure names the case to replay
    "--workers", "1",
    "--continue-on-failure",
    "--request-timeout", "10",
    "--generation-database", "none",
]
# fmt: on


def run_schemathesis(url: str, workdir: Path, token: str) -> subprocess.CompletedProcess:
    """``st run`` with every check, bounded by examples per operation and a timeout."""
    st = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "--no-color"]
    return subprocess.run(
        [*st, "run", f"{url}/openapi.json", *ST_RUN],
        cwd=workdir,  # anything schemathesis writes stays in the test's folder
        env={**os.environ, "SCHEMATHESIS_ADMIN_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("admin_token", [TOKEN, None], ids=["admin-token", "no-admin-token"])
def test_schemathesis_finds_nothing(tmp_path, model_path, admin_token):
    env = {"VIGIL_ADMIN_TOKEN": admin_token} if admin_token else {}
    server = start_server(model_path, tmp_path / "logs", env=env)
    try:
        paths = requests.get(f"{server.url}/openapi.json", timeout=5).json()["paths"]
        result = run_schemathesis(server.url, tmp_path, admin_token or "unused")
        report = result.stdout[-6000:] + result.stderr[-2000:]
        assert result.returncode == 0, report
        assert "No issues found" in result.stdout, report
        assert f"Tested: {len(paths)}" in result.stdout, report

        m = scrape(server.url)
        if admin_token:
            # The fuzzer used the token (reloading the same file: unchanged) and checked that
            # no token is refused.
            assert metric(m, "vigil_model_reloads_total", result="unchanged") > 0
            refused = {"handler": "/admin/reload", "method": "POST", "status": "401"}
            assert metric(m, "http_requests_total", **refused) > 0
        else:
            # Without a token the route does not exist, and the document does not list it.
            assert "/admin/reload" not in paths
            assert requests.post(f"{server.url}/admin/reload", timeout=5).status_code == 404
        assert metric(m, "http_requests_total", handler="/prediction", method="POST", status="200")
        assert metric(m, "http_requests_total", handler="/predictions", method="POST", status="413")
    finally:
        server.stop()

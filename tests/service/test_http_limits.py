"""The real server's bounds on what one client can hold: head sizes, read deadlines, connections.

Raw sockets where a well-behaved client library would not misbehave: half-sent heads, idle
connections, oversized headers and request lines. Each wait is bounded by a socket timeout.
"""

from __future__ import annotations

import http.client
import json
import resource
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from service.runtime.http_protocol import RESERVED_FDS, HttpLimits
from service.settings import Settings
from tests.support import LiveServer, start_server, wait_for

pytestmark = pytest.mark.slow

BOUND = 10  # seconds any single wait below may take before the test fails


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_path) -> LiveServer:
    """Default size limits; deadlines of one second so the tests wait little."""
    env = {"VIGIL_HEADER_TIMEOUT": "1", "VIGIL_BODY_TIMEOUT": "1"}
    s = start_server(model_path, tmp_path_factory.mktemp("limits"), env=env)
    yield s
    s.stop()


def connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=BOUND)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; fails on a socket timeout (BOUND)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# ------------------------------------------------------------------------ request heads


@pytest.mark.parametrize(
    ("headers", "status", "detail"),
    [
        ({"X-Big": "a" * 20_000}, 431, "header 'x-big' is 20005 bytes; the limit is 16384"),
        ({"X-Big": "a" * 1_000_000}, 431, "over 65536 bytes (VIGIL_MAX_HEAD_BYTES)"),
        ({f"X-{i}": "a" * 10_000 for i in range(8)}, 431, "(VIGIL_MAX_HEAD_BYTES)"),
    ],
)
def test_oversized_headers_get_431_with_a_json_detail(server, headers, status, detail):
    r = requests.get(server.url + "/health/live", headers=headers, timeout=BOUND)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert detail in r.json()["detail"]


@pytest.mark.parametrize("length", [9_000, 1_000_000])
def test_long_request_target_gets_414_with_a_json_detail(server, length):
    r = requests.get(server.url + "/health/live?q=" + "a" * length, timeout=BOUND)
    assert r.status_code == 414
    assert r.json()["detail"] == "request target is over 8192 bytes (VIGIL_MAX_URL_BYTES)"


def test_heads_within_the_limits_are_served(server):
    r = requests.get(server.url + "/health/live?q=" + "a" * 8_000, timeout=BOUND)
    assert r.status_code == 200
    headers = {f"X-{i}": "a" * 16_000 for i in range(3)}  # each header and all under
    r = requests.get(server.url + "/health/live?q=" + "a" * 8_000, headers=headers, timeout=BOUND)
    assert r.status_code == 200


def test_huge_headers_do_not_grow_the_worker(server):
    """Six clients sending 16 MB headers at once: refused, and the worker holds none of it."""
    before = rss_mb(server.proc.pid)

    def send() -> int:
        return requests.get(
            server.url + "/health/live", headers={"X-Big": "a" * 16_000_000}, timeout=BOUND
        ).status_code

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(lambda _: send(), range(6))) == [431] * 6
    assert rss_mb(server.proc.pid) - before < 30
    assert requests.get(server.url + "/health/ready", timeout=BOUND).status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /health/live x y\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST /prediction HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_http_gets_uvicorns_plain_400(server, raw):
    """As the README says: the server's own answer, before the app, and not JSON."""
    with connect(server) as sock:
        sock.sendall(raw)
        status, headers, body = parse(read_until_closed(sock))
    assert (status, body) == (400, b"Invalid HTTP request received.")
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert requests.get(server.url + "/health/live", timeout=BOUND).status_code == 200


def test_requests_in_pieces_and_pipelined_are_served(server):
    """The head count and deadlines follow requests across reads: one byte per write, and
    three requests in one write, are answered as usual."""
    request = (
        b"POST /prediction HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10\r\n\r\n[0.1, 0.1]"
    )
    with connect(server) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(request)):
            sock.sendall(request[i : i + 1])
        sock.sendall(request * 2 + request.replace(b"HTTP/1.1", b"HTTP/1.0"))
        answers = read_until_closed(sock)  # HTTP/1.0: closed after the last answer
    assert answers.count(b"HTTP/1.1 200 OK") == 4
    assert answers.count(b'"prediction":1') == 4


# -------------------------------------------------------------------------- slow clients


def test_half_sent_head_gets_408_and_is_closed_while_others_are_served(server):
    served = http.client.HTTPConnection("127.0.0.1", server.port, timeout=BOUND)
    served.request("GET", "/health/live")
    assert served.getresponse().read() == b'{"status":"alive"}'

    slow = [connect(server) for _ in range(20)]
    for sock in slow:
        sock.sendall(b"POST /prediction HTTP/1.1\r\nHost: x\r\nContent-")
    for _ in range(20):  # meanwhile, everyone else is answered
        r = requests.post(server.url + "/prediction", json=[0.1, 0.1], timeout=BOUND)
        assert r.status_code == 200
    for sock in slow:
        status, headers, body = parse(read_until_closed(sock))
        sock.close()
        assert status == 408
        assert headers["connection"] == "close"
        assert json.loads(body) == {
            "detail": "request head not received within 1 s (VIGIL_HEADER_TIMEOUT)"
        }
    # The header deadline has passed, yet a kept-alive connection between requests stays
    # open: only uvicorn's keep-alive timeout (5 s) applies to it.
    served.request("GET", "/health/live")
    assert served.getresponse().status == 200
    served.close()


def test_half_sent_body_gets_408(server):
    with connect(server) as sock:
        sock.sendall(
            b"POST /prediction HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 20\r\n\r\n[0.1,"
        )
        status, _, body = parse(read_until_closed(sock))
    assert status == 408
    assert json.loads(body)["detail"] == (
        "request body not received within 1 s (VIGIL_BODY_TIMEOUT)"
    )


def test_a_connection_that_sends_nothing_is_closed(server):
    with connect(server) as sock:
        assert read_until_closed(sock) == b""


# -------------------------------------------------------------------------- connection cap


def test_connections_over_the_cap_get_503_while_open_ones_are_served(tmp_path, model_path):
    server = start_server(model_path, tmp_path, env={"VIGIL_MAX_CONNECTIONS": "4"})
    try:
        # start_server's own connections are closed: wait until the server has let them go.
        open_: list[http.client.HTTPConnection] = []

        def four_fit() -> bool:
            conns = [
                http.client.HTTPConnection("127.0.0.1", server.port, timeout=BOUND)
                for _ in range(4)
            ]
            try:
                for c in conns:
                    c.request("GET", "/health/live")
                    if c.getresponse().read() != b'{"status":"alive"}':
                        raise ConnectionRefusedError
            except (OSError, http.client.HTTPException):
                for c in conns:
                    c.close()
                return False
            open_.extend(conns)
            return True

        wait_for(four_fit, BOUND, "four connections served")

        with connect(server) as extra:
            status, headers, body = parse(read_until_closed(extra))
        assert status == 503
        assert headers["retry-after"] == "1"
        assert "at most 4 at once (VIGIL_MAX_CONNECTIONS)" in json.loads(body)["detail"]

        for c in open_:  # the open connections go on being served
            c.request("POST", "/prediction", body="[0.1, 0.1]")
            assert c.getresponse().status == 200
        open_.pop().close()

        def fifth_served() -> bool:
            return requests.get(server.url + "/health/live", timeout=BOUND).status_code == 200

        wait_for(fifth_served, BOUND, "a connection once one was closed")
        for c in open_:
            c.close()
    finally:
        server.stop()


def test_the_connection_cap_fits_the_open_file_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (100, hard))
    try:
        limits = HttpLimits.from_settings(Settings(max_connections=512))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert limits.max_connections == 100 - RESERVED_FDS
    assert HttpLimits.from_settings(Settings(max_connections=50)).max_connections == 50


def test_idle_sockets_cannot_lock_clients_out_under_a_low_open_file_limit(tmp_path, model_path):
    """The issue's case: ``ulimit -n 64`` and 60 idle sockets. Over the cap they are answered
    503 and closed at once; under it they are closed at the header deadline; then the service
    answers again, without a restart."""

    def ulimit_64() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    env = {"VIGIL_HEADER_TIMEOUT": "1"}
    server = start_server(model_path, tmp_path, env=env, preexec_fn=ulimit_64)
    idle = []
    try:
        for _ in range(60):
            idle.append(connect(server))

        def served() -> bool:
            r = requests.get(server.url + "/health/ready", timeout=2)
            return r.status_code == 200

        wait_for(served, BOUND, "an answer with 60 idle sockets open")
        answers = [read_until_closed(sock) for sock in idle]  # every idle socket was closed
        assert {a.split(b" ", 2)[1] for a in answers if a} <= {b"503"}
        assert "Too many open files" not in server.log()
    finally:
        for sock in idle:
            sock.close()
        server.stop()


# --------------------------------------------------------------------------------- HEAD


GET_ROUTES = ["/health/live", "/health/ready", "/model_information", "/metrics"]


@pytest.mark.parametrize("path", GET_ROUTES)
def test_head_answers_as_get_without_a_body(server, path):
    get = requests.get(server.url + path, timeout=BOUND)
    with connect(server) as sock:
        sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        status, headers, body = parse(read_until_closed(sock))
    assert status == 200
    assert body == b""
    assert headers["content-type"] == get.headers["content-type"]
    if path != "/metrics":  # its length changes between two scrapes
        assert int(headers["content-length"]) == len(get.content)

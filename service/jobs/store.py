"""The job store: training jobs, their uploads and webhook deliveries in one SQLite file.

Layout (by default in the registry folder, ``<registry>/.jobs/``, which the registry ignores)::

    jobs.sqlite3          jobs, deliveries and their attempts (WAL mode)
    uploads/<job id>.csv  a job's training data, from submit until the job ends
    runners/<id>.lock     flock'd by each live runner: how a restart tells a dead one

Several processes (serving workers, runners, the CLI) share the file safely: every write is
one ``BEGIN IMMEDIATE`` transaction (SQLite's write lock, waited for up to the busy timeout),
and every state change is a conditional ``UPDATE`` (``... WHERE status = 'queued'``), so two
runners never take the same job and a late writer never overwrites a finished job.

Restart semantics: a job found ``running`` whose runner is gone (its lock file is free: the
process died, even by ``kill -9``) is marked ``failed`` with ``error: "interrupted by a
restart"``; it is not re-queued, because a job that kills its runner (out of memory, say)
would otherwise kill every runner after it. Queued jobs stay queued and are run by the next
runner. Resubmit an interrupted job (with a new ``Idempotency-Key`` if one was used).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from service.models.registry import check_name

Status = Literal["queued", "running", "succeeded", "failed", "canceled"]
STATUSES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "canceled")
FINISHED: tuple[str, ...] = ("succeeded", "failed", "canceled")
INTERRUPTED = "interrupted by a restart"
DB_FILE = "jobs.sqlite3"
JOBS_DIR = ".jobs"
MAX_PAGE = 500
DEFAULT_PAGE = 50
BUSY_TIMEOUT_S = 30.0
_CHUNK = 1 << 20
_ORPHAN_TMP_S = 3600.0
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ID_LEN = 26

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    detector TEXT NOT NULL,
    params TEXT NOT NULL,
    options TEXT NOT NULL,
    promote INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL CHECK (status IN
        ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    progress REAL NOT NULL DEFAULT 0,
    rows INTEGER,
    version INTEGER,
    model_version TEXT,
    previous_version INTEGER,
    error TEXT,
    idempotency_key TEXT UNIQUE,
    body_hash TEXT NOT NULL,
    upload TEXT,
    runner TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_by_model ON jobs (model, seq);
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    job_id TEXT,
    model TEXT,
    body TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    created_at TEXT NOT NULL,
    next_attempt_at REAL,
    round_attempts INTEGER NOT NULL DEFAULT 0,
    lease_until REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_by_job ON deliveries (job_id, seq);
CREATE TABLE IF NOT EXISTS attempts (
    delivery_id TEXT NOT NULL REFERENCES deliveries (id),
    n INTEGER NOT NULL,
    at TEXT NOT NULL,
    status_code INTEGER,
    error TEXT,
    duration_ms REAL NOT NULL,
    PRIMARY KEY (delivery_id, n)
);
CREATE TABLE IF NOT EXISTS anomaly_windows (
    model TEXT PRIMARY KEY,
    last_sent REAL NOT NULL
);
"""


class JobError(Exception):
    """A job operation was refused; the message names the job, field or problem."""


class JobNotFound(JobError, LookupError):
    """No such job or delivery (API: 404)."""


class IdempotencyConflict(JobError):
    """The Idempotency-Key was used before with a different request (API: 422)."""


class JobStateError(JobError):
    """The job's state does not allow it, e.g. canceling a finished job (API: 409)."""


class UploadTooLarge(JobError):
    """The training data is over the limit; nothing was stored (API: 413)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"training data is over {limit} bytes (VIGIL_MAX_UPLOAD_BYTES); nothing was stored"
        )


def new_id() -> str:
    """A ULID-like id: 48 bits of milliseconds then 80 random bits, Crockford base32, so ids
    sort by creation time (within a millisecond, at random)."""
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(_ID_LEN)))


def check_job_id(value: object) -> str:
    if (
        not isinstance(value, str)
        or len(value) != _ID_LEN
        or any(c not in _CROCKFORD for c in value)
    ):
        raise JobNotFound(f"no job {value!r}: a job id is {_ID_LEN} characters of 0-9 A-Z")
    return value


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_from_epoch(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Job:
    id: str
    model: str
    detector: str
    params: Mapping[str, Any]
    options: Mapping[str, Any]
    """label_column, exclude, feature_names, filename: how to read the upload."""
    promote: bool
    status: Status
    created_at: str
    started_at: str | None
    finished_at: str | None
    progress: float
    rows: int | None
    version: int | None
    """The registry's version number, on success."""
    model_version: str | None
    """The artifact's content hash, on success."""
    error: str | None
    cancel_requested: bool
    upload: str | None = field(default=None, repr=False)
    runner: str | None = field(default=None, repr=False)
    previous_version: int | None = None
    """On a promoting job's success: the version the default alias pointed to before."""

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        return cls(
            id=row["id"],
            model=row["model"],
            detector=row["detector"],
            params=json.loads(row["params"]),
            options=json.loads(row["options"]),
            promote=bool(row["promote"]),
            status=row["status"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            progress=float(row["progress"]),
            rows=row["rows"],
            version=row["version"],
            model_version=row["model_version"],
            error=row["error"],
            cancel_requested=bool(row["cancel_requested"]),
            upload=row["upload"],
            runner=row["runner"],
            previous_version=row["previous_version"],
        )

    def public(self) -> dict[str, Any]:
        """What the API answers (no server paths, no runner ids)."""
        out: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "detector": self.detector,
            "params": dict(self.params),
            "promote": self.promote,
            "status": self.status,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "progress": self.progress,
            "rows": self.rows,
        }
        if self.status == "succeeded":
            out["version"] = self.version
            out["model_version"] = self.model_version
        if self.status == "failed":
            out["error"] = self.error
        if self.status == "running" and self.cancel_requested:
            out["cancel_requested"] = True
        return out


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    next_cursor: str | None
    """Pass as ``cursor`` for the next (older) page; None on the last page."""


@dataclass(frozen=True)
class NewDelivery:
    """A webhook message to send: its Standard Webhooks body is fixed when it is recorded,
    so every attempt sends the same bytes under the same ``webhook-id``."""

    event: str
    body: str
    job_id: str | None = None
    model: str | None = None
    delay: float = 0.0
    """Seconds before the first attempt (the retry schedule's first item)."""


@dataclass(frozen=True)
class Attempt:
    n: int
    at: str
    status_code: int | None
    error: str | None
    duration_ms: float


@dataclass(frozen=True)
class Delivery:
    id: str
    """The ``webhook-id`` header, the same on every attempt."""
    event: str
    job_id: str | None
    model: str | None
    body: str
    status: Literal["pending", "succeeded", "failed"]
    created_at: str
    next_attempt_at: float | None
    round_attempts: int
    """Attempts since the delivery was created or redelivered: the retry schedule's index."""
    last_error: str | None
    attempts: tuple[Attempt, ...] = ()

    @classmethod
    def from_row(cls, row: sqlite3.Row, attempts: Iterable[Attempt] = ()) -> Delivery:
        return cls(
            id=row["id"],
            event=row["event"],
            job_id=row["job_id"],
            model=row["model"],
            body=row["body"],
            status=row["status"],
            created_at=row["created_at"],
            next_attempt_at=row["next_attempt_at"],
            round_attempts=row["round_attempts"],
            last_error=row["last_error"],
            attempts=tuple(attempts),
        )

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event,
            "status": self.status,
            "created_at": self.created_at,
            "next_attempt_at": iso_from_epoch(self.next_attempt_at)
            if self.status == "pending"
            else None,
            "last_error": self.last_error,
            "attempts": [
                {
                    "n": a.n,
                    "at": a.at,
                    "status_code": a.status_code,
                    "error": a.error,
                    "duration_ms": a.duration_ms,
                }
                for a in self.attempts
            ],
        }


def _canonical(value: object) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise JobError(f"not representable as JSON: {exc}") from None


def _check_idempotency_key(key: object) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= 255 or not key.isprintable():
        raise JobError("Idempotency-Key must be 1 to 255 printable characters")
    return key


def rows_csv(feature_names: Sequence[str], rows: Sequence[Sequence[object]]) -> bytes:
    """A JSON submission's ``feature_names`` and ``rows`` as the CSV a job reads (so both
    kinds of submission train from the same reader). ValueError names the bad row/column."""
    names = [str(n) for n in feature_names]
    if not names or any(not n.strip() or "," in n or "\n" in n for n in names):
        raise ValueError("feature_names must be non-empty names without commas or newlines")
    lines = [",".join(names)]
    for i, row in enumerate(rows):
        if not isinstance(row, Sequence) or isinstance(row, str) or len(row) != len(names):
            raise ValueError(f"rows[{i}]: expected {len(names)} numbers ({', '.join(names)})")
        cells = []
        for j, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"rows[{i}][{j}] ({names[j]}): expected a number")
            cells.append(repr(float(value)))
        lines.append(",".join(cells))
    return ("\n".join(lines) + "\n").encode()


def default_db_path(registry: str | Path) -> Path:
    return Path(registry) / JOBS_DIR / DB_FILE


class JobStore:
    """The job store at ``path`` (its folder holds the uploads and runner locks)."""

    def __init__(self, path: str | Path, *, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.dir = self.path.parent
        self.uploads = self.dir / "uploads"
        self.runners = self.dir / "runners"
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        for folder in (self.dir, self.uploads, self.runners):
            folder.mkdir(parents=True, exist_ok=True)
        db = self._db()
        db.execute("PRAGMA journal_mode=WAL")  # persistent; a no-op when already WAL
        db.executescript(_SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
        if "previous_version" not in columns:  # a job store made before the column existed
            db.execute("ALTER TABLE jobs ADD COLUMN previous_version INTEGER")

    # --- connections and transactions ---------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 connections are per thread; after a fork, the
        child opens its own)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA synchronous=FULL")  # a 202 means the job is on disk
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: SQLite's write lock is taken at BEGIN, so reads inside it
        see what no one else can change before COMMIT."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    # --- submitting -----------------------------------------------------------------------

    def submit(
        self,
        model: str,
        detector: str,
        params: Mapping[str, Any],
        data: bytes | IO[bytes] | Iterable[bytes],
        *,
        options: Mapping[str, Any] | None = None,
        promote: bool = False,
        idempotency_key: str | None = None,
        max_bytes: int | None = None,
    ) -> tuple[Job, bool]:
        """Queue a job on ``data`` (a CSV with a header), streamed to a file. Returns the job
        and whether it is new: with an ``idempotency_key`` used before for the same request,
        the earlier job (False); for a different request, IdempotencyConflict. Over
        ``max_bytes``, UploadTooLarge and nothing is kept."""
        check_name(model)
        if not isinstance(detector, str) or not detector:
            raise JobError("detector must be a non-empty string")
        if not isinstance(params, Mapping):
            raise JobError("params must be a JSON object")
        if idempotency_key is not None:
            _check_idempotency_key(idempotency_key)
        spec = _canonical(
            {
                "model": model,
                "detector": detector,
                "params": dict(params),
                "options": dict(options or {}),
                "promote": bool(promote),
            }
        )
        tmp = self.uploads / f".upload-{secrets.token_hex(8)}.tmp"
        try:
            data_hash = self._write_upload(tmp, data, max_bytes)
            body_hash = hashlib.sha256(f"{spec}\n{data_hash}".encode()).hexdigest()
            with self._tx() as db:
                if idempotency_key is not None:
                    row = db.execute(
                        "SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,)
                    ).fetchone()
                    if row is not None:
                        if row["body_hash"] != body_hash:
                            raise IdempotencyConflict(
                                f"Idempotency-Key {idempotency_key!r} was used for a different"
                                f" request (job {row['id']}); use a new key for a new job"
                            )
                        return Job.from_row(row), False
                job_id = new_id()
                upload = f"{job_id}.csv"
                row = db.execute(
                    "INSERT INTO jobs (id, model, detector, params, options, promote, status,"
                    " created_at, idempotency_key, body_hash, upload)"
                    " VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?) RETURNING *",
                    (
                        job_id,
                        model,
                        detector,
                        _canonical(dict(params)),
                        _canonical(dict(options or {})),
                        int(bool(promote)),
                        now_iso(),
                        idempotency_key,
                        body_hash,
                        upload,
                    ),
                ).fetchone()
                # Inside the transaction: a sweep (which holds the same lock) never sees the
                # file without its row, and a crash before COMMIT leaves only an orphan file.
                os.rename(tmp, self.uploads / upload)
                return Job.from_row(row), True
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _write_upload(
        path: Path, data: bytes | IO[bytes] | Iterable[bytes], max_bytes: int | None
    ) -> str:
        if isinstance(data, bytes | bytearray | memoryview):
            chunks: Iterable[bytes] = [bytes(data)]
        elif hasattr(data, "read"):
            chunks = iter(lambda: data.read(_CHUNK), b"")  # type: ignore[union-attr]
        else:
            chunks = data  # type: ignore[assignment]
        digest = hashlib.sha256()
        size = 0
        with path.open("xb") as fh:
            for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise UploadTooLarge(max_bytes)
                digest.update(chunk)
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        return digest.hexdigest()

    def upload_path(self, job: Job) -> Path | None:
        return None if job.upload is None else self.uploads / job.upload

    # --- reading --------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        check_job_id(job_id)
        row = self._db().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job {job_id!r}")
        return Job.from_row(row)

    def list(
        self,
        *,
        model: str | None = None,
        status: str | None = None,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> Page:
        """Jobs newest first, ``limit`` at a time; ``cursor`` is the previous page's
        ``next_cursor``."""
        where, args = [], []
        if model is not None:
            check_name(model)
            where.append("model = ?")
            args.append(model)
        if status is not None:
            if status not in STATUSES:
                raise JobError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
            where.append("status = ?")
            args.append(status)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise JobError(f"limit must be a whole number from 1 to {MAX_PAGE}, got {limit!r}")
        db = self._db()
        if cursor is not None:
            try:
                check_job_id(cursor)
            except JobNotFound:
                raise JobError(f"cursor {cursor!r} is not a job id") from None
            found = db.execute("SELECT seq FROM jobs WHERE id = ?", (cursor,)).fetchone()
            if found is None:
                raise JobError(f"cursor {cursor!r} is not a job id")
            where.append("seq < ?")
            args.append(found["seq"])
        sql = "SELECT * FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = db.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit + 1)).fetchall()
        jobs = [Job.from_row(r) for r in rows[:limit]]
        return Page(jobs, jobs[-1].id if len(rows) > limit else None)

    def counts(self) -> dict[str, int]:
        """Jobs by status (every status, zeros included): for a gauge; ``queued`` is the
        queue depth."""
        rows = self._db().execute("SELECT status, count(*) FROM jobs GROUP BY status")
        out = dict.fromkeys(STATUSES, 0)
        out.update({status: n for status, n in rows})
        return out

    def durations(self, bounds: Sequence[float]) -> list[tuple[str, int, float, list[int]]]:
        """Succeeded jobs by detector: ``(detector, count, sum of seconds from start to end,
        [jobs within each bound])``, cumulative as a Prometheus histogram's buckets.
        Aggregated in SQLite, one pass: what a scrape reads."""
        seconds = "(julianday(finished_at) - julianday(started_at)) * 86400.0"
        within = "".join(f", sum({seconds} <= ?)" for _ in bounds)
        rows = self._db().execute(
            f"SELECT detector, count(*), total({seconds}){within} FROM jobs"
            " WHERE status = 'succeeded' AND started_at IS NOT NULL GROUP BY detector",
            tuple(float(b) for b in bounds),
        )
        return [(r[0], r[1], float(r[2]), [int(n or 0) for n in r[3:]]) for r in rows]

    def delivery_counts(self) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
        """``({(event, status): deliveries}, {(event, result): attempts})``: deliveries by
        their state (pending, succeeded, failed) and attempts by outcome (succeeded: a 2xx
        answer, failed: anything else). Attempts are never removed: the second is a counter."""
        db = self._db()
        deliveries = {
            (event, status): n
            for event, status, n in db.execute(
                "SELECT event, status, count(*) FROM deliveries GROUP BY event, status"
            )
        }
        attempts: dict[tuple[str, str], int] = {}
        for event, ok, n in db.execute(
            "SELECT d.event, coalesce(a.status_code BETWEEN 200 AND 299, 0), count(*)"
            " FROM attempts a JOIN deliveries d ON d.id = a.delivery_id GROUP BY 1, 2"
        ):
            attempts[(event, "succeeded" if ok else "failed")] = n
        return deliveries, attempts

    # --- state transitions ----------------------------------------------------------------

    def cancel(self, job_id: str) -> Job:
        """A queued job is canceled at once; a running one gets ``cancel_requested`` and its
        runner kills it. Canceling a canceled job is a no-op; a finished one, JobStateError."""
        check_job_id(job_id)
        with self._tx() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job {job_id!r}")
            status = row["status"]
            if status == "queued":
                row = db.execute(
                    "UPDATE jobs SET status = 'canceled', finished_at = ?, upload = NULL"
                    " WHERE id = ? AND status = 'queued' RETURNING *",
                    (now_iso(), job_id),
                ).fetchone()
            elif status == "running":
                row = db.execute(
                    "UPDATE jobs SET cancel_requested = 1 WHERE id = ? RETURNING *", (job_id,)
                ).fetchone()
            elif status != "canceled":
                raise JobStateError(f"job {job_id} already {status}; it cannot be canceled")
        if status == "queued":
            self._remove_file(f"{job_id}.csv")
        return Job.from_row(row)

    def claim(self, runner: str, limit: int) -> Job | None:
        """Take the oldest queued job for ``runner`` unless ``limit`` jobs already run (across
        every runner sharing this store). One UPDATE ... WHERE status = 'queued' under the
        write lock: two runners never take the same job."""
        with self._tx() as db:
            (running,) = db.execute("SELECT count(*) FROM jobs WHERE status = 'running'").fetchone()
            if running >= limit:
                return None
            row = db.execute(
                "UPDATE jobs SET status = 'running', started_at = ?, runner = ?, progress = 0"
                " WHERE seq = (SELECT seq FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1)"
                " AND status = 'queued' RETURNING *",
                (now_iso(), runner),
            ).fetchone()
            return None if row is None else Job.from_row(row)

    def set_progress(
        self, job_id: str, runner: str, progress: float, rows: int | None = None
    ) -> bool:
        progress = min(1.0, max(0.0, float(progress)))
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET progress = ?, rows = coalesce(?, rows)"
                " WHERE id = ? AND status = 'running' AND runner = ?",
                (progress, rows, job_id, runner),
            )
            return cur.rowcount == 1

    def cancel_requested(self, runner: str) -> set[str]:
        rows = self._db().execute(
            "SELECT id FROM jobs WHERE status = 'running' AND runner = ? AND cancel_requested = 1",
            (runner,),
        )
        return {r["id"] for r in rows}

    def finish(
        self,
        job_id: str,
        runner: str,
        status: Literal["succeeded", "failed", "canceled"],
        *,
        version: int | None = None,
        model_version: str | None = None,
        previous_version: int | None = None,
        rows: int | None = None,
        error: str | None = None,
        events: Callable[[Job], Iterable[NewDelivery]] | None = None,
    ) -> Job | None:
        """End ``runner``'s running job. ``events(job)`` gives the webhook messages to record
        in the same transaction (an outbox: the job's end and its notification are stored
        together or not at all). None if the job was not this runner's running job."""
        if status not in FINISHED:
            raise ValueError(f"finish: status must be one of {FINISHED}, got {status!r}")
        with self._tx() as db:
            row = db.execute(
                "UPDATE jobs SET status = ?, finished_at = ?, version = ?, model_version = ?,"
                " previous_version = ?, rows = coalesce(?, rows), error = ?, upload = NULL,"
                " progress = CASE WHEN ? = 'succeeded' THEN 1.0 ELSE progress END"
                " WHERE id = ? AND status = 'running' AND runner = ? RETURNING *",
                (
                    status,
                    now_iso(),
                    version,
                    model_version,
                    previous_version,
                    rows,
                    error,
                    status,
                    job_id,
                    runner,
                ),
            ).fetchone()
            if row is None:
                return None
            job = Job.from_row(row)
            for message in events(job) if events else ():
                self._insert_delivery(db, message)
        self._remove_file(f"{job_id}.csv")
        return job

    # --- runners and restarts -------------------------------------------------------------

    @contextlib.contextmanager
    def runner_lease(self, runner: str) -> Iterator[None]:
        """Hold ``runner``'s lock file while it runs jobs: the kernel frees it when the process
        dies, however it dies, which is how ``recover`` tells a dead runner from a live one.
        (The fd is not inherited by job processes: Python opens files non-inheritable.)"""
        path = self.runners / f"{runner}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            yield
        finally:
            path.unlink(missing_ok=True)
            os.close(fd)

    def runner_alive(self, runner: str | None) -> bool:
        if not runner:
            return False
        path = self.runners / f"{runner}.lock"
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        path.unlink(missing_ok=True)
        return False

    def recover(self, events: Callable[[Job], Iterable[NewDelivery]] | None = None) -> list[Job]:
        """Fail every running job whose runner is gone with "interrupted by a restart", and
        remove uploads no job needs any more. Safe to call from any process at any time."""
        rows = self._db().execute("SELECT id, runner FROM jobs WHERE status = 'running'")
        failed = []
        for job_id, runner in [(r["id"], r["runner"]) for r in rows]:
            if not self.runner_alive(runner):
                job = self.finish(job_id, runner, "failed", error=INTERRUPTED, events=events)
                if job is not None:
                    failed.append(job)
        self._sweep_uploads()
        return failed

    def _sweep_uploads(self) -> None:
        with self._tx() as db:
            keep = {
                r["upload"] for r in db.execute("SELECT upload FROM jobs WHERE upload IS NOT NULL")
            }
            for entry in os.listdir(self.uploads):
                path = self.uploads / entry
                if entry.endswith(".tmp"):
                    # a submit in progress elsewhere writes one; only old ones are orphans
                    with contextlib.suppress(FileNotFoundError):
                        if time.time() - path.stat().st_mtime > _ORPHAN_TMP_S:
                            path.unlink()
                elif entry not in keep:
                    path.unlink(missing_ok=True)

    def _remove_file(self, name: str) -> None:
        (self.uploads / name).unlink(missing_ok=True)

    # --- webhook deliveries ---------------------------------------------------------------

    @staticmethod
    def _insert_delivery(db: sqlite3.Connection, message: NewDelivery) -> sqlite3.Row:
        return db.execute(
            "INSERT INTO deliveries (id, event, job_id, model, body, status, created_at,"
            " next_attempt_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) RETURNING *",
            (
                f"msg_{new_id()}",
                message.event,
                message.job_id,
                message.model,
                message.body,
                now_iso(),
                time.time() + message.delay,
            ),
        ).fetchone()

    def add_delivery(self, message: NewDelivery) -> Delivery:
        with self._tx() as db:
            return Delivery.from_row(self._insert_delivery(db, message))

    def add_windowed_delivery(
        self, model: str, interval: float, message: NewDelivery, now: float | None = None
    ) -> Delivery | None:
        """Record ``message`` unless one was recorded for ``model`` in the last ``interval``
        seconds, by any process sharing the store (None then: try again later)."""
        now = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute(
                "SELECT last_sent FROM anomaly_windows WHERE model = ?", (model,)
            ).fetchone()
            if row is not None and now - row["last_sent"] < interval:
                return None
            db.execute(
                "INSERT INTO anomaly_windows (model, last_sent) VALUES (?, ?)"
                " ON CONFLICT (model) DO UPDATE SET last_sent = excluded.last_sent",
                (model, now),
            )
            return Delivery.from_row(self._insert_delivery(db, message))

    def claim_delivery(self, lease: float, now: float | None = None) -> Delivery | None:
        """Lease the most overdue pending delivery for ``lease`` seconds (longer than one
        attempt takes), so senders in several processes never send it twice at once; a
        sender that dies mid-attempt leaves it to be retried when the lease ends."""
        now = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute(
                "UPDATE deliveries SET lease_until = ? WHERE seq = (SELECT seq FROM deliveries"
                " WHERE status = 'pending' AND next_attempt_at <= ?"
                " AND (lease_until IS NULL OR lease_until <= ?)"
                " ORDER BY next_attempt_at LIMIT 1) RETURNING *",
                (now + lease, now, now),
            ).fetchone()
            return None if row is None else Delivery.from_row(row)

    def record_attempt(
        self,
        delivery_id: str,
        *,
        status_code: int | None,
        error: str | None,
        duration_ms: float,
        next_attempt_at: float | None,
        succeeded: bool,
    ) -> Delivery:
        """Store one attempt's outcome; ``next_attempt_at`` None with ``succeeded`` False
        means the schedule is used up: the delivery has failed."""
        status = "succeeded" if succeeded else ("pending" if next_attempt_at else "failed")
        with self._tx() as db:
            (n,) = db.execute(
                "SELECT count(*) FROM attempts WHERE delivery_id = ?", (delivery_id,)
            ).fetchone()
            db.execute(
                "INSERT INTO attempts (delivery_id, n, at, status_code, error, duration_ms)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (delivery_id, n + 1, now_iso(), status_code, error, round(duration_ms, 3)),
            )
            db.execute(
                "UPDATE deliveries SET status = ?, next_attempt_at = ?, lease_until = NULL,"
                " round_attempts = round_attempts + 1, last_error = ? WHERE id = ?",
                (status, None if status != "pending" else next_attempt_at, error, delivery_id),
            )
        return self.delivery(delivery_id)

    def redeliver(self, delivery_id: str) -> Delivery:
        """Send a delivery again from the start of the retry schedule, same ``webhook-id``."""
        with self._tx() as db:
            row = db.execute(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = ?,"
                " round_attempts = 0, lease_until = NULL WHERE id = ? RETURNING id",
                (time.time(), delivery_id),
            ).fetchone()
        if row is None:
            raise JobNotFound(f"no delivery {delivery_id!r}")
        return self.delivery(delivery_id)

    def delivery(self, delivery_id: str) -> Delivery:
        found = self._deliveries("id = ?", (delivery_id,))
        if not found:
            raise JobNotFound(f"no delivery {delivery_id!r}")
        return found[0]

    def deliveries(self, *, job_id: str | None = None, event: str | None = None) -> list[Delivery]:
        """Deliveries (oldest first) with their attempts: a job's, an event's, or all."""
        where, args = ["1"], []
        if job_id is not None:
            self.get(job_id)  # JobNotFound for an unknown job
            where.append("job_id = ?")
            args.append(job_id)
        if event is not None:
            where.append("event = ?")
            args.append(event)
        return self._deliveries(" AND ".join(where), tuple(args))

    def _deliveries(self, where: str, args: tuple[object, ...]) -> list[Delivery]:
        db = self._db()
        rows = db.execute(f"SELECT * FROM deliveries WHERE {where} ORDER BY seq", args).fetchall()
        out = []
        for row in rows:
            attempts = [
                Attempt(a["n"], a["at"], a["status_code"], a["error"], a["duration_ms"])
                for a in db.execute(
                    "SELECT * FROM attempts WHERE delivery_id = ? ORDER BY n", (row["id"],)
                )
            ]
            out.append(Delivery.from_row(row, attempts))
        return out

    def next_delivery_at(self) -> float | None:
        """When the earliest pending delivery is due (epoch seconds), for a sender's sleep."""
        (t,) = (
            self._db()
            .execute(
                "SELECT min(max(next_attempt_at, coalesce(lease_until, 0))) FROM deliveries"
                " WHERE status = 'pending'"
            )
            .fetchone()
        )
        return t

"""Standard Webhooks, the pure parts: secrets, signatures, message bodies, retry timing.

Spec: https://www.standardwebhooks.com/ (a message is signed as ``{id}.{timestamp}.{body}``
with HMAC-SHA256 under the base64-decoded secret, sent as ``webhook-signature: v1,<base64>``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

SECRET_PREFIX = "whsec_"
DEFAULT_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
"""The spec's schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h."""
JITTER = 0.1
"""Each delay is stretched by up to this share, so many retries do not arrive together."""
MAX_RETRY_AFTER_S = 86400.0


def parse_secret(secret: str) -> bytes:
    """The signing key from ``whsec_<base64>``; ValueError says what is wrong (never the
    secret itself)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"the webhook secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the webhook secret after {SECRET_PREFIX!r} is not base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"the webhook secret must decode to 24 to 64 bytes, got {len(key)}")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one attempt."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def event_body(event: str, data: dict[str, Any], at: datetime | None = None) -> str:
    """The JSON body ``{"type", "timestamp", "data"}`` (fixed when the event is recorded)."""
    at = at or datetime.now(UTC)
    timestamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps(
        {"type": event, "timestamp": timestamp, "data": data},
        separators=(",", ":"),
        allow_nan=False,
    )


def parse_schedule(text: str) -> tuple[float, ...]:
    """``"0,5,300"`` -> (0.0, 5.0, 300.0): the delay before each attempt, the first one's
    counted from when the event happened. ValueError names the bad item."""
    items = [item.strip() for item in text.split(",")]
    out = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"retry schedule item {item!r} is not a number of seconds") from None
        if not 0 <= value <= MAX_RETRY_AFTER_S:
            raise ValueError(
                f"retry schedule item {item!r} must be from 0 to {MAX_RETRY_AFTER_S:g} seconds"
            )
        out.append(value)
    return tuple(out)


def retry_delay(
    schedule: tuple[float, ...],
    attempts_made: int,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the next attempt after ``attempts_made`` attempts, with jitter; at least
    the receiver's ``Retry-After``. None when the schedule is used up."""
    if attempts_made >= len(schedule):
        return None
    delay = schedule[attempts_made] * (1 + JITTER * (rng or random).random())
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds, from delta-seconds or an HTTP date; None if absent or
    unreadable; capped at a day."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)

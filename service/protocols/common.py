"""What both protocol codecs share: the error type, the error body, strict JSON decoding."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from service.core.features import InputError, decode_json

BAD_REQUEST = 400
NOT_FOUND = 404
NOT_READY = 503
LISTED_MODELS = 20
"""Most model names an error message lists."""


class ProtocolError(ValueError):
    """A request the protocol refuses. ``message`` names the field and the problem; the route
    answers ``status`` with :func:`error_body`."""

    def __init__(self, message: str, status: int = BAD_REQUEST) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def error_body(message: str) -> bytes:
    """The error document of both protocols: ``{"error": "..."}``."""
    return orjson.dumps({"error": message})


def decode_object(body: bytes, error: type[ProtocolError], what: str) -> dict:
    """Strict JSON (no NaN, Infinity or numbers beyond float64, as the JSON API) that must be
    an object; ``what`` says what the object should hold, for the messages."""
    if not body.strip():
        raise error(f"request body is empty: send a JSON object with {what}")
    try:
        value = decode_json(body)
    except InputError as exc:
        raise error(exc.message) from None
    if type(value) is not dict:
        raise error(f"request body must be a JSON object with {what}, got {type_name(value)}")
    return value


def type_name(value: object) -> str:
    """``a string``, ``an array``, ``null``... for messages about a JSON value."""
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def unknown_model_message(name: str, known: Sequence[str]) -> str:
    names = sorted(known)
    listed = ", ".join(names[:LISTED_MODELS]) or "none"
    if len(names) > LISTED_MODELS:
        listed += f" and {len(names) - LISTED_MODELS} more"
    return f"unknown model {name!r}; models: {listed}"


def not_ready_message(name: str, reason: str | None) -> str:
    return f"model {name!r} is not ready: {reason or 'no version loaded'}"

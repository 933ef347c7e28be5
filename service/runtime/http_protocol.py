"""uvicorn's httptools protocol with bounds on what one client can make a worker hold.

uvicorn (0.54) with httptools puts no limit on the request line or headers, no deadline on a
request that is half sent, and no cap on open connections. This subclass adds them, keeping
the httptools parser (h11 has a size option but costs several times the throughput):

- the request target over ``max_url_bytes`` is 414; one header (name and value) over
  ``max_header_bytes``, or the request line and headers over ``max_head_bytes``, is 431. A head
  still arriving is counted as its bytes come in, so a worker never buffers much more than
  ``max_head_bytes`` of it;
- a connection must deliver a request's head within ``header_timeout`` seconds (from the
  connection or the head's first bytes) and its body within ``body_timeout`` seconds after the
  head, else it gets a 408 and is closed; a connection that sends nothing is closed silently.
  Keep-alive between requests stays uvicorn's own timeout;
- a connection past ``max_connections`` open ones in this worker gets a 503 and is closed
  (the cap is lowered to fit the open-file limit, so accept() never runs out of descriptors).

Refusals are JSON ``{"detail": ...}`` like the app's own errors, sent with ``connection:
close``. A request that completes within one read (every ordinary request) costs a few
comparisons and one pass over its headers, about 1.5 µs: no timer is armed unless a read ends
in the middle of a request.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

# After refusing a request whose head is still coming in, keep reading (and discarding) for
# this long before closing, so the client can finish sending and read the answer instead of
# getting a reset (what nginx calls a lingering close).
LINGER_SECONDS = 2.0
# File descriptors kept for everything but client connections: the interpreter, the listening
# socket, the model and metric files, logs, the event loop's own.
RESERVED_FDS = 32
_SHOWN_NAME_CHARS = 40

log = logging.getLogger("vigil")


@dataclass(frozen=True)
class HttpLimits:
    """The bounds the protocol enforces; built from the Settings (which hold the defaults)."""

    max_url_bytes: int
    max_header_bytes: int
    max_head_bytes: int
    header_timeout: float
    body_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Any) -> HttpLimits:
        """The settings' limits, with the connection cap lowered to fit the process's
        file-descriptor limit: past it, accept() fails and nobody is answered at all."""
        values = {name: getattr(settings, name) for name in cls.__dataclass_fields__}
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        room = max(1, soft - RESERVED_FDS) if soft != resource.RLIM_INFINITY else soft
        if values["max_connections"] > room:
            log.warning(
                "VIGIL_MAX_CONNECTIONS=%d does not fit the open-file limit (ulimit -n %d):"
                " capping at %d connections per worker",
                values["max_connections"],
                soft,
                room,
            )
            values["max_connections"] = room
        return cls(**values)


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that was answered already."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` with the :class:`HttpLimits`; give uvicorn
    ``functools.partial(LimitedHttpToolsProtocol, limits=...)`` as its ``http`` class."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HttpLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._head_bytes = 0  # bytes read since the current head began, counted per read
        self._in_body = False  # between a request's head and the end of its body
        self._read_timer: asyncio.TimerHandle | None = None
        self._refused = False  # answered with a refusal: what follows is discarded

    # ---------------------------------------------------------------- connection and reads

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.logger.warning("refusing a connection: %d open", len(self.connections) - 1)
            self._refuse(
                503,
                f"too many connections: this worker serves at most {self.limits.max_connections}"
                " at once (VIGIL_MAX_CONNECTIONS); retry shortly",
                linger=False,
                extra=b"retry-after: 1\r\n",
            )
            return
        self._arm(self.limits.header_timeout)  # the first request must come in time too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, plus the head count and the read deadline.
        if self._refused:
            return
        self._unset_keepalive_if_required()
        if not self._in_body:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._refused:  # a callback below answered and stopped the parser
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        if self._in_body:
            if self._read_timer is None:
                self._arm(self.limits.body_timeout)
        elif self.scope is not None and "method" not in self.scope:  # a head is arriving
            if self._head_bytes > self.limits.max_head_bytes:
                self._refuse_head(len(self.url) > self.limits.max_url_bytes)
            elif self._read_timer is None:
                self._arm(self.limits.header_timeout)

    # ------------------------------------------------------------------ parser callbacks

    def on_headers_complete(self) -> None:
        if self._read_timer is not None:
            self._disarm()
        self._head_bytes = 0
        self._in_body = True
        limits = self.limits
        if len(self.url) > limits.max_url_bytes:
            self._refuse_head(True)
            raise _Refused
        total = len(self.url)
        for name, value in self.headers:
            size = len(name) + len(value)
            if size > limits.max_header_bytes:
                shown = name[:_SHOWN_NAME_CHARS].decode("latin-1")
                self._refuse(
                    431,
                    f"header {shown!r} is {size} bytes; the limit is {limits.max_header_bytes}"
                    " (VIGIL_MAX_HEADER_BYTES)",
                )
                raise _Refused
            total += size
        if total > limits.max_head_bytes:
            self._refuse_head(False)
            raise _Refused
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        if self._read_timer is not None:
            self._disarm()
        super().on_message_complete()

    # ----------------------------------------------------------------------- refusals

    def _refuse_head(self, url_too_long: bool) -> None:
        if url_too_long:
            self._refuse(
                414,
                f"request target is over {self.limits.max_url_bytes} bytes (VIGIL_MAX_URL_BYTES)",
            )
        else:
            self._refuse(
                431,
                f"request line and headers are over {self.limits.max_head_bytes} bytes"
                " (VIGIL_MAX_HEAD_BYTES)",
            )

    def _refuse(self, status: int, detail: str, linger: bool = True, extra: bytes = b"") -> None:
        """Answer ``status`` with a JSON detail and close the connection (after a short
        lingering read when the client may still be sending)."""
        self._refused = True
        self._disarm()
        body = orjson.dumps({"detail": detail})
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\nconnection: close\r\n",
            extra,
            b"\r\n",
        ]
        transport = self.transport
        transport.write(b"".join(head) + body)
        if linger and transport.can_write_eof():
            transport.write_eof()  # the answer and a FIN; reads go on, into the void
            self.flow.resume_reading()
            self.loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()

    # -------------------------------------------------------------------- the deadline

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(seconds, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if self._in_body:
            if cycle is not None and not cycle.response_started:
                # The app is waiting for the body: it now reads a disconnect instead.
                cycle.disconnected = True
                cycle.message_event.set()
                self._refuse(
                    408,
                    f"request body not received within {self.limits.body_timeout:g} s"
                    " (VIGIL_BODY_TIMEOUT)",
                    linger=False,
                )
            else:
                self.transport.close()
        elif self.scope is not None and "method" not in self.scope:
            if cycle is not None and not cycle.response_complete:
                self.transport.close()  # still answering a pipelined request: no 408 in it
                return
            self._refuse(
                408,
                f"request head not received within {self.limits.header_timeout:g} s"
                " (VIGIL_HEADER_TIMEOUT)",
                linger=False,
            )
        else:  # connected, never sent a byte
            self.transport.close()

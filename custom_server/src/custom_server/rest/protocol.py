"""uvicorn's httptools connection protocol, hardened against abusive clients and for clean shutdowns.

What it adds to ``HttpToolsProtocol``:

- Request line plus headers bounded in bytes (``MAX_HEADER_BYTES``) and fields (``MAX_HEADERS``):
  past either the client gets 431 at once, before the rest is read (httptools itself buffers any size).
- A deadline for the request line and headers (``TIMEOUT_HEADERS_S``), from the connection's opening
  or the request's first byte: a silent connection is closed, a half-sent request gets 408.
- Clean closes: an idle connection is closed by sending FIN and reading (and dropping) what the client
  still sends until it closes too, never by closing with unread data, which makes the kernel send a
  reset that destroys a response or request in flight.
- Shutdown (``uvicorn.Server.shutdown`` calls ``shutdown()`` on every connection): a request in
  progress finishes and its response closes the connection; an idle connection stays open until its keep-alive
  deadline, for a request already on its way (answered with ``Connection: close``), then closes cleanly.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: How long a closing connection waits for the client's FIN after sending its own.
LINGER_S = 2.0


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The per-connection limits, from the settings."""

    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    timeout_headers_s: float = 10.0


class _HeaderFieldsExceeded(Exception):
    """Raised from the parser callback to stop parsing; turned into 431."""


def _response(status: bytes, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return b"".join(
        [
            b"HTTP/1.1 " + status + b"\r\n",
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class _CleanClosingTransport:
    """The transport as a request's cycle sees it: ``close()`` closes cleanly, and a response's status
    line and headers go out with its body (see ``ServerHttpProtocol.write_response``)."""

    def __init__(self, transport: asyncio.Transport, protocol: ServerHttpProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def write(self, data: bytes) -> None:
        self._protocol.write_response(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._protocol.close_cleanly()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class ServerHttpProtocol(HttpToolsProtocol):
    """See the module docstring. uvicorn creates one per connection."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits: ConnectionLimits = getattr(config, "connection_limits", None) or ConnectionLimits()
        self._awaiting_head = True  # the bytes fed now are a request line or headers
        self._head_bytes = 0
        self._head_fields = 0
        self._refusal: tuple[bytes, str] | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._draining = False
        self._closing = False  # FIN sent: input is dropped until the client closes
        self._in_head = False  # between a request's first byte and the end of its headers
        self._held_head: bytes | None = None  # a response's status line and headers, until its body

    # --- connection life --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def eof_received(self) -> bool | None:
        if self._closing:
            self._cancel_timers()
            self.transport.close()
        return None

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # read and dropped, so that closing later sends FIN, not a reset
        if self._awaiting_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_timer is None and not self._closing:
            # A request's head arrived in part: the rest has TIMEOUT_HEADERS_S from its first byte.
            # (One that arrives whole, the common case, needs no timer.)
            self._arm_head_timer()
        if self._awaiting_head and self._refusal is None and self._head_bytes > self.limits.max_header_bytes:
            self._refuse(
                b"431 Request Header Fields Too Large",
                f"the request line and headers passed {self.limits.max_header_bytes} bytes (MAX_HEADER_BYTES)",
            )

    def send_400_response(self, msg: str) -> None:
        # httptools reports an exception raised in a callback as a parse error: say what it was.
        if self._refusal is not None:
            self._refuse(*self._refusal)
            return
        self._refuse(b"400 Bad Request", msg)

    # --- parser callbacks -------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_fields += 1
        if self._head_fields > self.limits.max_headers:
            self._refusal = (
                b"431 Request Header Fields Too Large",
                f"the request has more than {self.limits.max_headers} header fields (MAX_HEADERS)",
            )
            raise _HeaderFieldsExceeded
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()
        if self.cycle is not None:
            # The cycle closes the connection after a response with Connection: close; make that a
            # clean close too (a 429 or 413 may be sent before the body is read).
            self.cycle.transport = _CleanClosingTransport(self.transport, self)  # type: ignore[assignment]
            if self._draining:
                self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_head = True
        self._head_bytes = 0
        self._head_fields = 0

    # --- writing ----------------------------------------------------------------------------------

    def write_response(self, data: bytes) -> None:
        """What a request's cycle writes. uvicorn writes a response's status line and headers, then its
        body, in two sends; the head is held until the body's first part (or the loop's next turn) and
        both go out in one send: a send on loopback TCP cost as much as a tenth of a small request."""
        held = self._held_head
        if held is not None:
            self._held_head = None
            self.transport.writelines((held, data))
        elif data[:9] == b"HTTP/1.1 " and data[9:10] != b"1":  # a final response's head (not 100 Continue)
            self._held_head = data
            self.loop.call_soon(self.flush_response)
        else:
            self.transport.write(data)

    def flush_response(self) -> None:
        """Write a held response head now (before anything else is written or the connection closes)."""
        held = self._held_head
        if held is not None:
            self._held_head = None
            if not self.transport.is_closing():
                self.transport.write(held)

    # --- timeouts and closing ---------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.timeout_headers_s, self._head_timeout)

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._closing or not self._awaiting_head:
            return
        if self._head_bytes == 0:
            self.close_cleanly()  # nothing was asked: nothing to answer
        else:
            self._refuse(
                b"408 Request Timeout",
                f"the request line and headers took over {self.limits.timeout_headers_s:g} s (TIMEOUT_HEADERS_S)",
            )

    def _refuse(self, status: bytes, message: str) -> None:
        if self.transport.is_closing() or self._closing:
            return
        self.flush_response()
        self.logger.warning("refused a request: %s", message)
        self.transport.write(_response(status, message))
        self.close_cleanly()

    def close_cleanly(self) -> None:
        """Send FIN, drop whatever the client still sends, close when it closes (or after a linger)."""
        if self.transport.is_closing() or self._closing:
            return
        self.flush_response()
        self._closing = True
        self._cancel_timers()
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._close_timer = self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._close_timer = None

    def _idle(self) -> bool:
        return (self.cycle is None or self.cycle.response_complete) and self._awaiting_head and self._head_bytes == 0

    def timeout_keep_alive_handler(self) -> None:
        self.timeout_keep_alive_task = None
        if self._idle():
            self.close_cleanly()

    def shutdown(self) -> None:
        """Graceful shutdown of this connection (called by uvicorn once the listener is closed)."""
        self._draining = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # close once this response is sent
        elif self._idle() and self.timeout_keep_alive_task is None:
            # No response sent on it yet, so no keep-alive deadline: give it one.
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
        # An idle connection keeps the keep-alive deadline its last response set: the client may reuse
        # it until then, and a busy client can take longer than any shorter grace to send its next
        # request (a 1 s grace reset one of 300 requests from 64 clients on a loaded machine).
        # A request arriving meanwhile is served with Connection: close (see on_headers_complete).

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._draining and not self.transport.is_closing() and self._idle():
            self.close_cleanly()

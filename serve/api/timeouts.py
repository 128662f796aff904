"""Slow clients on the REST port: a request's head comes in time and in size, a stalled answer is
dropped. Torch-free.

uvicorn times out only idle keep-alive connections: a client that sends its request line and
headers a byte at a time, or never reads its answer, holds a connection and the memory behind it
for as long as it likes. `SlowClientProtocol` is uvicorn's httptools protocol with bounds from
serve.api.limits: a request's head (its line and headers) must be complete `header_timeout_s`
after its first byte (or after the connection opened) and hold at most HEAD_BYTES, else the
client gets 408 or 431 and the connection is closed; and an answer the client has stopped
reading for `body_timeout_s` is given up and the connection dropped. A body's size and time are
serve.api.guard's. Used by serve.api.server (uvicorn's `http` setting), with `protocol(limits)`.
"""

from __future__ import annotations

import functools
import logging
from asyncio import TimerHandle
from http import HTTPStatus

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serve.api.limits import HEAD_BYTES, Limits
from serve.api.refusals import log_refusal


class SlowClientProtocol(HttpToolsProtocol):
    def __init__(self, *args, limits: Limits, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.head_timer: TimerHandle | None = None  # set while a request head is arriving
        self.head_bytes = 0
        self.in_message = False  # between a request's first byte and the end of its body
        self.stall_timer: TimerHandle | None = None  # set while the client does not read

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._expect_head()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self.head_timer, self.stall_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self.in_message = True
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self.in_message = False
        super().on_message_complete()

    def on_headers_complete(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if not self.in_message:  # the first bytes of a request (on a kept-alive connection)
            self._expect_head()
        if self.head_timer is not None:  # counted before parsing: the parser keeps all of it
            end = data.find(b"\r\n\r\n")
            self.head_bytes += len(data) if end < 0 else end + 4
            if self.head_bytes > HEAD_BYTES:
                self._refuse(431, f"the request line and headers pass {HEAD_BYTES:,} bytes")
                return
        super().data_received(data)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.stall_timer is None:
            self.stall_timer = self.loop.call_later(self.limits.body_timeout_s, self._stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.stall_timer is not None:
            self.stall_timer.cancel()
            self.stall_timer = None

    def _expect_head(self) -> None:
        if self.head_timer is None:
            self.head_bytes = 0
            self.head_timer = self.loop.call_later(self.limits.header_timeout_s, self._late_head)

    def _late_head(self) -> None:
        self.head_timer = None
        if not self.transport.is_closing():
            self._refuse(
                408,
                f"the request line and headers were not complete {self.limits.header_timeout_s:g}"
                " s after they began: send them at once",
            )

    def _stalled(self) -> None:
        self.stall_timer = None
        if not self.transport.is_closing():
            self._log(0, f"the client read none of its answer for {self.limits.body_timeout_s:g} s")
            self.transport.abort()  # close() would wait to send what the client does not read

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` (unless an answer is under way) and close the connection."""
        self._log(status, message)
        if self.cycle is None or self.cycle.response_complete:
            body = orjson.dumps({"error": message})
            head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()]
            head += [b"%s: %s\r\n" % header for header in self.server_state.default_headers]
            head.append(b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body))
            self.transport.write(b"".join(head) + b"connection: close\r\n\r\n" + body)
        self.transport.close()

    def _log(self, status: int, message: str) -> None:
        client = "{}:{}".format(*self.client) if self.client else "a client"
        answer = str(status) if status else "dropped"
        log_refusal("REST", f"connection of {client}", answer, message, logging.WARNING)


def protocol(limits: Limits):
    """The protocol class uvicorn's `http` setting takes, bound to `limits`."""
    return functools.partial(SlowClientProtocol, limits=limits)

"""The REST server's door: request bodies bounded in size and time, no error left unanswered.

Torch-free. An ASGI middleware in front of kserve's FastAPI app (serve.api.server adds it). A POST
to `/v2/models/{name}[/versions/{v}]/infer` may carry that model's body limit
(serve.api.limits: its batch cap of images written as JSON), any other request ENVELOPE_BYTES. A
larger `Content-Length` is refused with 413 before a byte of the body is read; a chunked body as
soon as it passes the limit. All bodies being received at once hold at most IN_FLIGHT_BODY_BYTES
(past that a request is answered 503, as when the queue is full; one request alone is always let
in). A body still arriving `body_timeout_s` after its headers is answered 408. An error
that no handler turned into an answer becomes a 500 with its traceback logged once, and the
connection stays open (Starlette would re-raise it, and uvicorn would drop the connection).
"""

from __future__ import annotations

import asyncio
import re

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.api.limits import ENVELOPE_BYTES, IN_FLIGHT_BODY_BYTES, JSON_VALUE_BYTES, Limits
from serve.api.limits import item_values as values_per_image
from serve.api.protocol import Overloaded, TooLarge, TooSlow
from serve.api.refusals import INTERNAL, log_fault, rest_refusal, shown

INFER = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/[^/]+)?/infer")


class Guard:
    """The middleware; `dataplane` (kserve's) describes the models, for their body limits."""

    def __init__(self, app: ASGIApp, limits: Limits, dataplane) -> None:
        self.app, self.limits, self.dataplane = app, limits, dataplane
        self.model_limits: dict[str, tuple[int, str]] = {}  # name -> (bytes, how it is derived)
        self.held = 0  # bytes of the bodies being received now, all requests together

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        body = _Body(self, *await self.limit(scope["path"]), _declared(scope))
        try:
            body.admit()
        except (TooLarge, Overloaded) as exc:
            answer = await rest_refusal(Request(scope), exc)
            await answer(scope, receive, send)
            return
        try:
            await self.app(scope, body.receive(receive), tracked)
        except ClientDisconnect:  # gone, or cut off by serve.api.timeouts: nobody to answer
            pass
        except Exception as exc:
            log_fault("REST", f"{scope['method']} {scope['path']}", exc)
            if not started:
                await JSONResponse({"error": INTERNAL}, 500)(scope, receive, send)
        finally:
            body.release()

    async def limit(self, path: str) -> tuple[int, str]:
        """The most bytes a body to `path` may hold, and how that figure comes about."""
        match = INFER.fullmatch(path)
        if match is None:
            return ENVELOPE_BYTES, "a request other than infer"
        name = match["name"]
        if name not in self.model_limits:
            try:
                inputs = (await self.dataplane.model_metadata(name))["inputs"]
            except Exception:  # not served (the route answers 404): not worth remembering
                return ENVELOPE_BYTES, f"model {shown(name)}, which is not served"
            values = values_per_image(inputs)
            how = (
                f"model {name!r}: {self.limits.max_images:,} images (the --max-queue) of "
                f"{values:,} values at {JSON_VALUE_BYTES} bytes each as JSON, plus "
                f"{ENVELOPE_BYTES // 1024} KiB"
            )
            self.model_limits[name] = self.limits.body_bytes(values), how
        return self.model_limits[name]


def _declared(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value)  # the HTTP parser has checked it is a number
    return None


class _Body:
    """One request's body: counted against its limit and the server's in-flight budget."""

    def __init__(self, guard: Guard, limit: int, how: str, declared: int | None) -> None:
        self.guard, self.limit, self.how, self.declared = guard, limit, how, declared
        self.held = self.received = 0
        self.complete = False

    def admit(self) -> None:
        if self.declared is not None:
            self._check_size(self.declared, "is")
            self._hold(self.declared)

    def receive(self, receive: Receive) -> Receive:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.guard.limits.body_timeout_s

        async def counted() -> Message:
            if self.complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise TooSlow(
                    f"the request body was not complete {self.guard.limits.body_timeout_s:g} s "
                    f"after its headers ({self.received:,} bytes came): send it at once"
                ) from None
            if message["type"] == "http.request":
                chunk = len(message.get("body", b""))
                self.received += chunk
                self.complete = not message.get("more_body", False)
                self._check_size(self.received, "passed")
                if self.declared is None:
                    self._hold(chunk)
            return message

        return counted

    def _check_size(self, size: int, verb: str) -> None:
        if size > self.limit:
            raise TooLarge(
                f"the request body {verb} {size:,} bytes; the limit is {self.limit:,} bytes "
                f"({self.how}): send fewer images per request, or binary tensors"
            )

    def _hold(self, size: int) -> None:
        guard = self.guard
        if guard.held and guard.held + size > IN_FLIGHT_BODY_BYTES:
            raise Overloaded(
                f"server busy: {guard.held / 2**20:.0f} MiB of request bodies are being received "
                f"(limit {IN_FLIGHT_BODY_BYTES // 2**20} MiB); retry shortly"
            )
        guard.held += size
        self.held += size

    def release(self) -> None:
        self.guard.held -= self.held
        self.held = 0

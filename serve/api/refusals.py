"""How the v2 API refuses a request: one verdict for REST and gRPC, a short safe message, one line.

Torch-free. `verdict(exc)` gives every error a request can cause its HTTP status and the gRPC code
of that status: bad input 400 / INVALID_ARGUMENT, a repository call while the extension is off
403 / PERMISSION_DENIED, an unknown model or path 404 / NOT_FOUND, a slow body 408 /
DEADLINE_EXCEEDED, a body over its limit 413 / RESOURCE_EXHAUSTED, a model version 404 /
NOT_FOUND, a full queue or a model not ready 503 / UNAVAILABLE. Messages name the field and the
rule; what a client sent appears only through `shown`, cut to a few dozen characters, and a
message is never longer than MESSAGE_CHARS. Each refusal writes one log line (WARNING; INFO for
503s, which overload makes many of) with control characters escaped and no traceback. Any other
error is the server's fault: 500 / INTERNAL with a fixed message, the traceback in the log.
`install` registers the REST handlers; `RefusingInterceptor` does the same for gRPC. Used by
serve.api.server, serve.api.guard and serve.api.timeouts.
"""

from __future__ import annotations

import logging
import reprlib
from dataclasses import dataclass, field
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from grpc import StatusCode
from grpc.aio import AbortError
from grpc_interceptor import AsyncExceptionToStatusInterceptor
from starlette.exceptions import HTTPException

from serve.api.protocol import InvalidInput, Overloaded, VersionNotServed, kserve

log = kserve.logging.logger.getChild("refusals")
ModelNotFound = kserve.errors.ModelNotFound
ModelNotReady = kserve.errors.ModelNotReady
ServerNotReady = kserve.errors.ServerNotReady

SHOWN_CHARS = 40  # a value from the request, in a message
MESSAGE_CHARS = 500  # a whole message (a model name of 100,000 characters stays out)
RETRY_AFTER_S = 1
INTERNAL = "internal server error: the server's log has the details"
NO_ROUTE = (
    "this server speaks the Open Inference Protocol v2 only: GET /v2/models lists the models, "
    "GET /v2/models/{name} describes one, POST /v2/models/{name}/infer runs it"
)
STATUS = (  # error kind -> HTTP status; HTTPExceptions (Refused among them) carry their own
    ((InvalidInput, RequestValidationError), 400),
    ((ModelNotFound, VersionNotServed), 404),
    (NotImplementedError, 501),
    ((Overloaded, ModelNotReady, ServerNotReady), 503),
)
GRPC_CODE = {
    400: StatusCode.INVALID_ARGUMENT,
    403: StatusCode.PERMISSION_DENIED,
    404: StatusCode.NOT_FOUND,
    405: StatusCode.UNIMPLEMENTED,
    408: StatusCode.DEADLINE_EXCEEDED,
    413: StatusCode.RESOURCE_EXHAUSTED,
    431: StatusCode.RESOURCE_EXHAUSTED,
    501: StatusCode.UNIMPLEMENTED,
    503: StatusCode.UNAVAILABLE,
}
CLOSING = (408, 413, 431)  # answered before the body was read: the connection cannot go on
JSON_KINDS = {
    dict: "an object",
    list: "a list",
    str: "a string",
    bool: "true/false",
    int: "a whole number",
    float: "a number with a fraction or exponent",
}

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = SHOWN_CHARS
_repr.maxlist = _repr.maxdict = _repr.maxtuple = 4
_repr.maxlevel = 2


def shown(value: object) -> str:
    """`value` as a message may quote it: its repr cut short, with its true length if long."""
    text = _repr.repr(value)
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        text += f" ({len(value):,} characters)"
    return text


def json_kind(value: object) -> str:
    """What a JSON value is, in words ("a string", "null"), for a message."""
    if value is None:
        return "null"
    return JSON_KINDS[type(value)]


def clip(text: str, limit: int = MESSAGE_CHARS) -> str:
    """`text` cut in the middle to `limit` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f"{text[:keep]} …[{len(text):,} characters in all]… {text[-keep // 2 :]}"


def escape(text: str) -> str:
    """`text` for a log line: newlines and other control characters written as escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


@dataclass(frozen=True)
class Verdict:
    status: int  # HTTP
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def grpc(self) -> StatusCode:
        return GRPC_CODE.get(self.status, StatusCode.INVALID_ARGUMENT)

    @property
    def level(self) -> int:
        return logging.INFO if self.status == 503 else logging.WARNING


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RequestValidationError):  # FastAPI's: never its "input" (the value)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"malformed request: {where}: {first.get('msg', 'invalid')}"
    if isinstance(exc, HTTPException):
        if exc.status_code == 404 and exc.detail == HTTPStatus.NOT_FOUND.phrase:
            return f"no such endpoint: {NO_ROUTE}"
        return str(exc.detail)
    if isinstance(exc, Overloaded):
        return exc.details
    if isinstance(exc, ModelNotFound):  # kserve's message holds the whole name, as sent
        name = exc.reason.removeprefix("Model with name ").removesuffix(" does not exist.")
        return f"no model {shown(name)} is served: GET /v2/models lists them"
    return str(getattr(exc, "reason", None) or exc)


def verdict(exc: BaseException) -> Verdict | None:
    """The refusal `exc` stands for, or None when it is the server's fault."""
    if isinstance(exc, HTTPException):
        status = exc.status_code
    else:
        status = next((code for kinds, code in STATUS if isinstance(exc, kinds)), None)
        if status is None:
            return None
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else {}
    if status in CLOSING:
        headers["Connection"] = "close"
    return Verdict(status, clip(_reason(exc)), headers)


def log_refusal(protocol: str, target: str, answer: str, message: str, level: int) -> None:
    """The one log line of a refused request."""
    target = escape(clip(target, 200))
    log.log(level, "refused %s %s: %s %s", protocol, target, answer, escape(message))


def log_fault(protocol: str, target: str, exc: BaseException) -> None:
    log.error("server fault on %s %s", protocol, escape(clip(target, 200)), exc_info=exc)


async def rest_refusal(request: Request, exc: Exception) -> JSONResponse:
    """The REST answer to a refusal (registered for every kind by `install`)."""
    found = verdict(exc)
    assert found is not None, f"no verdict for {type(exc).__name__}"
    target = f"{request.method} {request.scope['path']}"  # .url.path drops control characters
    log_refusal("REST", target, str(found.status), found.message, found.level)
    return JSONResponse({"error": found.message}, found.status, headers=found.headers)


def install(app: FastAPI) -> None:
    """Answer every refusal with `rest_refusal` (kserve's handlers log tracebacks at ERROR)."""
    kinds = {HTTPException, RequestValidationError}
    for group, _ in STATUS:
        kinds.update(group if isinstance(group, tuple) else (group,))
    for kind in kinds:
        app.add_exception_handler(kind, rest_refusal)


class RefusingInterceptor(AsyncExceptionToStatusInterceptor):
    """gRPC's `rest_refusal`: the same verdict as a status code, or INTERNAL for a fault."""

    async def handle_exception(self, ex, request_or_iterator, context, method_name) -> None:
        if isinstance(ex, AbortError):  # the call already has its status
            raise ex
        model = getattr(request_or_iterator, "model_name", "") or getattr(
            request_or_iterator, "name", ""
        )
        target = f"{method_name.rsplit('/', 1)[-1]} {model}"
        found = verdict(ex)
        if found is None:
            log_fault("gRPC", target, ex)
            await context.abort(StatusCode.INTERNAL, INTERNAL)
        log_refusal("gRPC", target, found.grpc.name, found.message, found.level)
        await context.abort(found.grpc, found.message)

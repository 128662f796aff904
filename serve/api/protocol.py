"""The protocol's types, from kserve imported safely: requests, responses, errors. Torch-free.

kserve's model_server module parses sys.argv when it is imported, so every rowgen module reaches
kserve through this one, which imports it with an empty command line. The errors rowgen adds to
kserve's are here too; serve.api.refusals gives each its HTTP status and gRPC code. Used by the
modules of serve.api and by serve.ray_app.front.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from grpc import StatusCode
from grpc_interceptor.exceptions import GrpcException
from starlette.exceptions import HTTPException


def import_kserve() -> ModuleType:
    """kserve, imported with an empty command line: its model_server module parses sys.argv at
    import time and would otherwise take our flags (or a test runner's) as its own."""
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        return importlib.import_module("kserve")
    finally:
        sys.argv = argv


kserve = import_kserve()
InvalidInput = kserve.errors.InvalidInput
InferRequest, InferResponse, InferOutput = (
    kserve.InferRequest,
    kserve.InferResponse,
    kserve.InferOutput,
)


class VersionNotServed(LookupError):
    """A request named a model version: each model is served in one unnamed version, so the
    version asked for does not exist here (404 / NOT_FOUND, as for an unknown model)."""


class Overloaded(GrpcException):
    """The server's queue is full: REST answers 503 with Retry-After, gRPC UNAVAILABLE."""

    status_code = StatusCode.UNAVAILABLE


class Refused(HTTPException):
    """A refusal with its own HTTP status (and so its gRPC code, serve.api.refusals).

    An HTTPException, so FastAPI passes it through untouched even when it is raised while
    FastAPI itself reads the body (it would turn any other error there into a vague 400)."""

    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(self.status, reason)
        self.reason = reason


class TooLarge(Refused):
    """A request body over its limit (serve.api.limits): 413, RESOURCE_EXHAUSTED."""

    status = 413


class TooSlow(Refused):
    """A request body still arriving after the body timeout: 408, DEADLINE_EXCEEDED."""

    status = 408


class Forbidden(Refused):
    """An endpoint this server keeps closed (the repository extension): 403, PERMISSION_DENIED."""

    status = 403

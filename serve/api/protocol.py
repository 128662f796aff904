"""The protocol's types, from kserve imported safely: requests, responses, errors. Torch-free.

kserve's model_server module parses sys.argv when it is imported, so every rowgen module reaches
kserve through this one, which imports it with an empty command line. Used by serve.api.models,
serve.api.inputs, serve.api.rest, serve.api.server and serve.ray_app.front.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from grpc import StatusCode
from grpc_interceptor.exceptions import GrpcException


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


class Overloaded(GrpcException):
    """The server's queue is full: REST answers 503 with Retry-After, gRPC UNAVAILABLE."""

    status_code = StatusCode.UNAVAILABLE

"""The v2 front of `python -m serve.ray_app`: kserve models whose work runs on Ray Serve replicas.

Torch-free. Each `ReplicaModel` is kserve's own `RayModel` (kserve's server calls it like any
model) forwarding the decoded request to a `BundleReplica` through a Serve handle. A replica
hands back a refusal (bad input, full batcher) as data, raised here as the same InvalidInput /
Overloaded as `make api`; a full Serve queue (BackPressureError) is Overloaded too.
"""

from __future__ import annotations

import importlib

from ray.serve.exceptions import BackPressureError

from serve.api.models import BATCH_IMAGES
from serve.api.protocol import InvalidInput, Overloaded, kserve

# kserve.ray is not imported by the kserve package; serve.api.protocol imported the package above
# with a clean command line, which a plain `from kserve.ray import ...` before it would not.
RayModel = importlib.import_module("kserve.ray").RayModel
to_http_parameters = kserve.protocol.infer_type.to_http_parameters
INVALID, BUSY = "invalid", "busy"


def refusal(exc: Exception) -> dict[str, str] | None:
    """A replica's refusal as plain data (kserve's exceptions do not survive pickling)."""
    if isinstance(exc, InvalidInput):
        return {"refused": INVALID, "message": exc.reason}
    if isinstance(exc, Overloaded):
        return {"refused": BUSY, "message": exc.details}
    return None


class ReplicaModel(RayModel):
    """Model `name` of a bundle deployment: metadata and inference from its replicas."""

    def __init__(self, name: str, handle) -> None:
        super().__init__(name, handle)
        self.ready = True
        self._types: tuple[list[dict], list[dict]] | None = None

    def load(self) -> bool:
        self.ready = True
        return self.ready

    async def _metadata(self) -> tuple[list[dict], list[dict]]:
        if self._types is None:
            self._types = await self._handle.metadata.remote(self.name)
        return self._types

    async def get_input_types(self) -> list[dict]:
        return (await self._metadata())[0]

    async def get_output_types(self) -> list[dict]:
        return (await self._metadata())[1]

    async def __call__(self, body, headers=None, verb=None):
        if body.parameters is not None and not isinstance(body.parameters, dict):
            body.parameters = to_http_parameters(body.parameters)  # gRPC maps do not pickle
        try:
            answer = await self._handle.infer.remote(self.name, body, headers)
        except BackPressureError:
            raise Overloaded(
                "server busy: the replicas' queues are full; retry shortly or add replicas"
            ) from None
        if isinstance(answer, dict):
            raise (InvalidInput if answer["refused"] == INVALID else Overloaded)(answer["message"])
        response, response_headers = answer
        if batch := (response.parameters or {}).get("batch_images"):
            BATCH_IMAGES.labels(model_name=self.name).observe(batch)
        return response, response_headers


def front_models(handles: dict[str, object]) -> list[ReplicaModel]:
    """Every v2 model of every deployed bundle, by the names its replicas serve."""
    return [
        ReplicaModel(name, handle)
        for handle in handles.values()
        for name in handle.names.remote().result()
    ]

"""The model repository extension (load and unload), and what "ready" means. Torch-free.

kserve serves the extension to anyone who reaches the port: `POST
/v2/repository/models/{name}/unload` (or gRPC RepositoryModelUnload) takes a model away until the
server restarts, while the server goes on saying it is ready. Here the extension is off unless
the server starts with `--enable-model-repository` (for a trusted network only): its REST routes
answer 403 and /openapi.json leaves them out, gRPC answers PERMISSION_DENIED, and the server's
metadata does not list it. `ServedModels` is the registry either way: it keeps an unloaded model
so that `load` brings it back (kserve's registry would look for it on disk, where there is
none), and the server is ready only while every model it started with is loaded and ready.
Used by serve.api.server.
"""

from __future__ import annotations

from serve.api.protocol import Forbidden, kserve

ROUTES = "/v2/repository/"  # the extension's REST routes start so
EXTENSION = "model_repository_extension"  # its name in the server metadata
OFF = (
    "the model repository extension is off on this server: load and unload would let any "
    "caller take models away. Start the server with --enable-model-repository, on a trusted "
    "network only, to use them"
)
ModelNotFound = kserve.errors.ModelNotFound


def unadvertise(app) -> None:
    """Leave the extension's routes out of `app`'s /openapi.json (they still answer 403)."""
    schema = app.openapi  # FastAPI's way to change the schema: replace the method

    def without_repository() -> dict:
        full = schema()
        full["paths"] = {p: v for p, v in full["paths"].items() if not p.startswith(ROUTES)}
        return full

    app.openapi = without_repository


class ServedModels(kserve.ModelRepository):
    """kserve's registry, keeping what `unload` removes so that `load` can restore it."""

    def __init__(self) -> None:
        super().__init__()
        self.unloaded: dict[str, object] = {}

    def unload(self, name: str) -> None:
        model = self.models.get(name)
        super().unload(name)  # KeyError for a model that is not loaded
        self.unloaded[name] = model

    def load(self, name: str) -> bool:
        if name in self.unloaded:
            model = self.unloaded.pop(name)
            model.load()
            self.update(model)
        return name in self.models

    async def all_ready(self) -> bool:
        """Every model the server started with is loaded and ready."""
        return not self.unloaded and all([await self.is_model_ready(n) for n in self.models])


class Repository(kserve.protocol.model_repository_extension.ModelRepositoryExtension):
    """The extension over `ServedModels`: Forbidden unless `enabled`, and an unknown model is
    not found (404) rather than not loadable (kserve's 503)."""

    def __init__(self, models: ServedModels, enabled: bool) -> None:
        super().__init__(models)
        self.served = models
        self.enabled = enabled

    async def load(self, model_name: str) -> None:
        self._check()
        if model_name not in self.served.models and model_name not in self.served.unloaded:
            raise ModelNotFound(model_name)
        await super().load(model_name)

    async def unload(self, model_name: str) -> None:
        self._check()
        await super().unload(model_name)

    def _check(self) -> None:
        if not self.enabled:
            raise Forbidden(OFF)

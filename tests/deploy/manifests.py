"""Kubernetes manifests read into the kserve SDK's model classes, strictly. Torch-free.

    python -m tests.deploy.manifests deploy/kserve/*.yaml    # one JSON line per file

The SDK's deserializers (`ApiClient.deserialize`, kserve's and Kubernetes' alike) keep the fields
a class knows and silently drop the rest, so a misspelt `readinessProbe` would vanish. Here the
classes judge instead: kserve's own (V1beta1..., generated with `openapi_types` and
`attribute_map`) are walked field by field, a field the class does not declare or a value of the
wrong type refused, and built through their constructors, whose client-side validation refuses a
missing required field; Kubernetes' (V1..., pydantic models with `extra="forbid"` and strict
types) validate their part themselves (`model_validate`). Every error names its path. What loads
also serializes back (kserve's `sanitize_for_serialization`) to exactly what was read.

kserve is imported only when a manifest is read, and tests do that in a process of its own:
kserve's and tritonclient's gRPC modules register the same protobuf names, so the two cannot
share the test runner's process (tests/api runs its server apart for the same reason).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml
from kubernetes import client as k8s

LIST = re.compile(r"list\[(.+)\]$")
DICT = re.compile(r"dict\(([^,]+), (.+)\)$")
# `object` is what the schema calls free-form values.
PRIMITIVES: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "int": int,
    "bool": bool,
    "float": (int, float),
    "object": (int, str, list, dict),
}


class ManifestError(ValueError):
    """The manifest does not fit the model classes; the message names the path and the fix."""


def kserve():
    """kserve, with a clean sys.argv (serve.api.protocol); see the module docstring."""
    from serve.api.protocol import kserve

    return kserve


def model_class(name: str) -> type:
    """A model class by its schema name: kserve's own (V1beta1...) or Kubernetes' (V1...)."""
    for models in (kserve().models, k8s.models):
        if hasattr(models, name):
            return getattr(models, name)
    raise ManifestError(f"no model class {name!r} in kserve or kubernetes")


def build(data: object, kind: str, path: str) -> object:
    """`data` (parsed YAML) as `kind` (a schema type name), refusing what the schema lacks."""
    if match := LIST.match(kind):
        if not isinstance(data, list):
            raise ManifestError(f"{path}: expected a list of {match[1]}, got {data!r}")
        return [build(item, match[1], f"{path}[{i}]") for i, item in enumerate(data)]
    if match := DICT.match(kind):
        if not isinstance(data, dict):
            raise ManifestError(f"{path}: expected a mapping of {match[2]}, got {data!r}")
        return {key: build(value, match[2], f"{path}.{key}") for key, value in data.items()}
    if kind in PRIMITIVES:
        if not isinstance(data, PRIMITIVES[kind]) or (isinstance(data, bool) and kind != "bool"):
            hint = " (quote it in YAML)" if kind == "str" else ""
            raise ManifestError(f"{path}: expected {kind}, got {data!r}{hint}")
        return data
    cls = model_class(kind)
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a {kind} mapping, got {data!r}")
    if hasattr(cls, "model_validate"):  # Kubernetes' pydantic models check themselves
        try:
            return cls.model_validate(data)
        except ValueError as exc:  # pydantic's ValidationError, one entry per problem
            problems = "; ".join(
                f"{path}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise ManifestError(f"{kind}: {problems}") from None
    attributes = {key: attr for attr, key in cls.attribute_map.items()}
    unknown = sorted(set(data) - set(attributes))
    if unknown:
        raise ManifestError(
            f"{path}: {kind} has no field {', '.join(map(repr, unknown))} "
            f"(its fields: {', '.join(sorted(attributes))})"
        )
    values = {
        attributes[key]: build(value, cls.openapi_types[attributes[key]], f"{path}.{key}")
        for key, value in data.items()
    }
    try:
        return cls(**values)
    except ValueError as exc:  # the class's client-side validation: a required field missing
        raise ManifestError(f"{path}: {kind}: {exc}") from None


def serialize(service: object) -> object:
    """The manifest a model object stands for, as kserve's client would send it."""
    return kserve().ApiClient().sanitize_for_serialization(service)


def lost(read: object, written: object, path: str = "manifest") -> list[str]:
    """Where `written` (the serialized model) does not give back `read` (the manifest).

    The classes may add defaults (kserve's ModelSpec writes `name: ""`); nothing read may be
    dropped or changed."""
    if isinstance(read, dict) and isinstance(written, dict):
        return [
            where
            for key, value in read.items()
            for where in (
                lost(value, written[key], f"{path}.{key}")
                if key in written
                else [f"{path}.{key} (dropped)"]
            )
        ]
    if isinstance(read, list) and isinstance(written, list) and len(read) == len(written):
        pairs = enumerate(zip(read, written, strict=True))
        return [where for i, pair in pairs for where in lost(*pair, f"{path}[{i}]")]
    return [] if read == written else [f"{path}: {read!r} became {written!r}"]


def load(data: dict) -> object:
    """A parsed InferenceService manifest as kserve's V1beta1InferenceService, strictly."""
    service = build(data, "V1beta1InferenceService", "manifest")
    if changes := lost(data, serialize(service)):
        raise ManifestError(f"the manifest does not survive a round trip: {'; '.join(changes)}")
    return service


def check(path: Path) -> dict:
    """What the model classes make of the YAML file at `path`: the type and its serialized
    form, or the error."""
    try:
        service = load(yaml.safe_load(path.read_text()))
    except ManifestError as exc:
        return {"path": str(path), "error": str(exc)}
    return {"path": str(path), "type": type(service).__name__, "service": serialize(service)}


def main(argv: list[str] | None = None) -> int:
    for path in sys.argv[1:] if argv is None else argv:
        print(json.dumps(check(Path(path))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

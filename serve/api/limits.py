"""What one v2 request may cost the server: images, bytes and seconds. Torch-free.

The batch cap (`--max-queue`, 1,024 images by default) is the figure the sizes derive from: every
model of a bundle (`<bundle>`, `<bundle>_step`, ...) refuses a request of more images, a REST body
may hold that many of the model's items written as JSON (`body_bytes`), and a gRPC message that
many written as binary (`message_bytes`). Request bodies being received at once hold at most
IN_FLIGHT_BODY_BYTES. Slow clients get `header_timeout_s` for a request's line and headers and
`body_timeout_s` for its body, or for reading an answer they have stalled. Used by serve.api.flags
(the flags that set them), serve.api.guard, serve.api.timeouts and serve.api.server; the figures
are in docs/security.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

JSON_VALUE_BYTES = 32  # one value as JSON text: "-1.2345678901234567e-05, " is 25, with room
BINARY_VALUE_BYTES = 8  # one value as binary: INT64, the widest datatype of the contract
ENVELOPE_BYTES = 64 * 1024  # a request's names, shapes, parameters and id around its tensors
HEAD_BYTES = 64 * 1024  # a REST request line and headers
IN_FLIGHT_BODY_BYTES = 256 * 1024 * 1024  # all REST bodies being received at one time


@dataclass(frozen=True)
class Limits:
    max_images: int = 1024  # per request, on every model: the batcher's --max-queue
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0

    def body_bytes(self, item_values: int) -> int:
        """The largest REST body of a model taking `item_values` values per image."""
        return self.max_images * item_values * JSON_VALUE_BYTES + ENVELOPE_BYTES

    def message_bytes(self, item_values: int) -> int:
        """The largest gRPC message (request or answer) for `item_values` values per image."""
        return self.max_images * item_values * BINARY_VALUE_BYTES + ENVELOPE_BYTES


def item_values(tensors: list[dict]) -> int:
    """Values per image over v2 tensor metadata ({"shape": [-1, 28, 28], ...}): the batch axis
    first, every other axis fixed (the contract's)."""
    return sum(math.prod(t["shape"][1:]) for t in tensors)

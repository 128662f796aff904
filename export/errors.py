"""Typed export failures; each message names the file or tensor and what was found."""

from __future__ import annotations


class ExportError(RuntimeError):
    """An exported file breaks the contract (names, shapes, opset, ops, metadata)."""


class ParityError(ExportError):
    """Two runtimes disagree on a tensor by more than the contract's tolerance."""

    def __init__(self, program: str, tensor: str, case: str, diff: float, tolerance: float):
        super().__init__(
            f"{program}: {tensor} differs by {diff:.3g} (> {tolerance:g}) in case {case}"
        )
        self.program, self.tensor, self.case, self.diff = program, tensor, case, diff

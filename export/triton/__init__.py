"""Triton Inference Server for rowgen bundles (docs/triton.md).

    python -m export.triton          # make triton: the model repositories (.repository)
    python -m export.triton.env      # make triton-env: the python backend's environment
    python -m export.triton.server   # make triton-serve: Triton on the python-backend repository

configs: the model configs as Triton's own messages; check: a model folder checked the way Triton
loads it; model: the python backend's model (runs inside Triton, not imported here).
"""

"""The v2 (KServe) API: every bundle's serving names over REST and gRPC (`make api`).

`<bundle>` completes images (complete.onnx, batched), `<bundle>_step` runs one step with the state
carried by the client (step.onnx), `<bundle>_sample` draws completions (sample.onnx) and
`<bundle>_sample_step` draws one row a call (sample_step.onnx), for sampling bundles only: names
from rowgen.contract.serving_names. Every request passes one validation
layer, the same for both protocols (docs/security.md).
"""

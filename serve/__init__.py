"""The servers, torch-free, on the bundles' ONNX programs (rowgen/ alone beneath them).

    python -m serve           # make serve: the Gradio app (serve/app/)
    python -m serve.api       # make api: the v2 (KServe) API, REST and gRPC (serve/api/)
    python -m serve.ray_app   # make api-ray: the v2 API on Ray Serve (serve/ray_app/)
    python -m serve.web       # make web: the in-browser page's static server

runtime.py (onnxruntime sessions per bundle) and batching.py (server-side batches) are shared.
"""

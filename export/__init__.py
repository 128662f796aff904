"""Export trained row generators to validated ONNX + TorchScript bundles (`python -m export`)."""

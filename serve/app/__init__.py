"""The Gradio app: `python -m serve` or `python -m serve.app` (`make serve`)."""

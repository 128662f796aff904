"""`python -m serve` (`make serve`): the Gradio app, as `python -m serve.app`."""

from serve.app.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main())

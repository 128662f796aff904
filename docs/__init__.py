"""The documentation's own tools: screenshots of the servers (`python -m docs.screenshots`)."""

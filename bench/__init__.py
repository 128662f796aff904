"""Benchmarks and evaluation: `python -m bench.speed`, `bench.evaluate` and `bench.load`."""

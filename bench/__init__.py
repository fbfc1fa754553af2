"""Benchmarks of hyperadapt; run with ``python -m bench COMMAND`` from the repository root."""

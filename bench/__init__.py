"""Benchmark of the bot's own overhead, run with `python -m bench` (see bench/README.md)."""

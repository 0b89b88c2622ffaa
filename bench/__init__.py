"""Benchmarks and the chaos soak: separate commands (`python -m bench.latency`, ...), not part of
the test suite. docs/benchmarks.md has their figures and how to reproduce them."""

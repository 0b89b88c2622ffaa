"""Benchmarks and the chaos soak: separate commands, not part of the test suite (docs/benchmarks.md)."""

"""Benchmarks that print measured figures (never asserted in tests: timings are too noisy for that)."""

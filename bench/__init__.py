"""Benchmarks: they print figures (one JSON line each); they are not timed tests."""

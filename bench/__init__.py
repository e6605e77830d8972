"""Benchmarks of letsgo-worker against the limit and the peer (see bench/RESULTS.md)."""

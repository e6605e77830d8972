"""The reliability suite: bad input, faults, crashes, load and secrets (see docs/RELIABILITY.md)."""

"""Attacks on the trust boundaries, each a test (issue 10)."""

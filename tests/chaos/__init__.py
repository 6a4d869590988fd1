"""The chaos suite (see harness.py)."""

"""Helpers for the tests of the built site (tests/test_site_*.py)."""

"""Stub: filled by its issue."""

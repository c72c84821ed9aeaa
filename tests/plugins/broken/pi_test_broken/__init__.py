"""Test plugin that cannot be imported."""

raise RuntimeError("pi_test_broken is broken on purpose")

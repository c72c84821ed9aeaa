"""Built-in sinks (each registered as a plugin through the ``pi_framework`` entry-point group)."""

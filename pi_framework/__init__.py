"""pi-framework: keep semantic and full-text search indices in sync with Plane's content."""

import pluggy

__version__ = "0.1.0"

#: Decorate a plugin's hook implementations with this marker.
hookimpl = pluggy.HookimplMarker("pi_framework")

__all__ = ["__version__", "hookimpl"]

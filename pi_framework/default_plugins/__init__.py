"""The core's own plugins, registered through the ``pi_framework`` entry-point group like any other."""

"""Test plugin that implements a hook the framework does not define."""

from pi_framework import hookimpl


@hookimpl
def register_widgets(register):
    register("widget")

"""Test plugin whose registration hook raises after registering one task (which must not survive)."""

from pi_framework import hookimpl


def orphan() -> None:
    return None


@hookimpl
def register_tasks(register):
    register(orphan, name="pi.celery_app.test_raiser_orphan")
    raise ValueError("raiser cannot count")

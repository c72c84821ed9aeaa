"""Celery task events (``celery events``, Flower) without message text.

A task event carries the task's arguments as the strings ``argsrepr``/``kwargsrepr``. Celery's task protocol 2
lets the *sender* choose them (``send_task(..., argsrepr=..., kwargsrepr=...)``; default: ``repr`` of the
arguments, cut at 1024 characters), and the worker puts them in its ``task-received`` event and log lines as
it got them. pi-framework cannot trust every sender, so a task that receives text declares it:

* worker side: :func:`redacting` gives the task options that make the worker use :class:`RedactingRequest`, which
  rebuilds both strings from the arguments themselves with the named ones masked, whatever the sender passed;
* sender side: :func:`redacted_reprs` gives the ``argsrepr``/``kwargsrepr`` to pass, so the ``task-sent`` event a
  sender with ``task_send_sent_event`` emits is clean too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pi_framework.redaction import MASK

#: what Celery cuts a repr at (``amqp.argsrepr_maxsize``)
MAX_REPR = 1024
REQUEST_CLASS = "pi_framework.events:RedactingRequest"


def _repr(value: object) -> str:
    from celery.utils.saferepr import saferepr

    return saferepr(value, MAX_REPR)


def redacted_reprs(
    args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, *, hide: Iterable[str], names: Sequence[str] = ()
) -> dict[str, str]:
    """``{"argsrepr": ..., "kwargsrepr": ...}`` of a call with the arguments named in *hide* masked.

    *names* are the names of the positional arguments, in order; when given, a positional argument beyond them and a
    keyword argument not among them are masked as well (an argument pi does not know may hold anything).
    """
    hidden, known = set(hide), set(names)

    def shown(name: object) -> bool:
        return isinstance(name, str) and name not in hidden and (not known or name in known)

    positional = [value if i < len(names) and shown(names[i]) else MASK for i, value in enumerate(args or ())]
    keywords = {key: value if shown(key) else MASK for key, value in (kwargs or {}).items()}
    return {"argsrepr": _repr(tuple(positional)), "kwargsrepr": _repr(keywords)}


def redacting(names: Iterable[str], *hide: str) -> dict[str, Any]:
    """Task options (for ``register(func, name=..., **options)``) that keep the arguments *hide* out of task events
    and worker log lines; *names* are the task's positional argument names, in order."""
    return {"Request": REQUEST_CLASS, "redacted_arguments": tuple(hide), "argument_names": tuple(names)}


def _request_class() -> type:
    from celery.worker.request import Request

    class RedactingRequest(Request):
        """A worker request whose ``argsrepr``/``kwargsrepr`` are rebuilt from the arguments, with the task's
        ``redacted_arguments`` masked (and every argument it does not name in ``argument_names``)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            task = self._task
            try:
                reprs = redacted_reprs(
                    self._args,
                    self._kwargs,
                    hide=getattr(task, "redacted_arguments", ()),
                    names=getattr(task, "argument_names", ()),
                )
            except Exception:  # noqa: BLE001 - arguments of an unexpected shape: show nothing of them
                reprs = {"argsrepr": repr(MASK), "kwargsrepr": repr(MASK)}
            self._argsrepr, self._kwargsrepr = reprs["argsrepr"], reprs["kwargsrepr"]
            # the pool process gets the request as a dict: its log lines and task.request see the same strings
            self._request_dict["argsrepr"], self._request_dict["kwargsrepr"] = self._argsrepr, self._kwargsrepr

        def info(self, safe: bool = False) -> dict[str, Any]:
            """What ``celery inspect active/reserved`` (and Flower's worker pages) show: the redacted strings, always."""
            return super().info(safe=True)

    RedactingRequest.__module__ = __name__
    RedactingRequest.__qualname__ = "RedactingRequest"
    return RedactingRequest


_classes: dict[str, type] = {}


def __getattr__(name: str) -> type:
    """``RedactingRequest`` is built on first use (Celery's worker modules are not imported by :func:`redacting`)."""
    if name != "RedactingRequest":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _classes:
        _classes[name] = _request_class()
    return _classes[name]

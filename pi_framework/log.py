"""Logging: loguru everywhere, with the standard library's (and so Celery's) records routed into it.

Secrets are masked twice: every record's message and extras by loguru's patcher
(:func:`~pi_framework.redaction.redact_record`, so every sink sees them masked), and the final text of the
stderr sink, tracebacks and exception messages included, by :func:`~pi_framework.redaction.redact_text`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TextIO

from loguru import logger

from pi_framework.redaction import redact_record, redact_text, register_secrets, settings_secrets
from pi_framework.settings import Settings


class _InterceptHandler(logging.Handler):
    """Send standard-library records to loguru, keeping the caller's location."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = logging.currentframe(), 2
        while frame is not None and frame.f_code.co_filename == logging.__file__:
            frame, depth = frame.f_back, depth + 1
        logger.patch(lambda entry: entry.update(name=record.name)).opt(depth=depth, exception=record.exc_info).log(
            level, record.getMessage()
        )


def _redacting_sink(stream: TextIO) -> Callable[[str], None]:
    """A sink writing the formatted line (traceback included) to *stream* with secrets masked."""

    def write(message: str) -> None:
        text = redact_text(message)
        for target in (stream, sys.__stderr__):
            try:
                target.write(text)  # type: ignore[union-attr]
                target.flush()  # type: ignore[union-attr]
                return
            except Exception:  # noqa: BLE001, S112 - never raise: loguru would print the raw record, secrets and all
                continue

    return write


def _is_terminal(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a closed or odd stream is simply not a terminal
        return False


def install_redaction(settings: Settings | None = None) -> None:
    """Mask secrets in every log record from now on; *settings*' own secrets (URL passwords, tokens) by value too."""
    if settings is not None:
        register_secrets(*settings_secrets(settings))
    logger.configure(patcher=redact_record)


def configure_logging(settings: Settings) -> None:
    """Install loguru's sink (JSON lines when ``PI_LOG_JSON=1``) and intercept standard logging."""
    install_redaction(settings)
    logger.remove()
    logger.add(
        _redacting_sink(sys.stderr),
        colorize=_is_terminal(sys.stderr),
        level=settings.PI_LOG_LEVEL.upper(),
        serialize=settings.PI_LOG_JSON,
        format="{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <7} | {process} | {name} | {message}",
        backtrace=False,
        diagnose=False,  # diagnose would print local variables, secrets included
    )
    logging.basicConfig(handlers=[_InterceptHandler()], level=0, force=True)
    for name in ("celery", "kombu", "amqp", "opensearch", "urllib3"):
        std = logging.getLogger(name)
        std.handlers = [_InterceptHandler()]
        std.propagate = False

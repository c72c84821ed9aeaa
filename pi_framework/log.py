"""Logging: loguru everywhere, with the standard library's (and so Celery's) records routed into it."""

from __future__ import annotations

import logging
import sys

from loguru import logger

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


def configure_logging(settings: Settings) -> None:
    """Install loguru's sink (JSON lines when ``PI_LOG_JSON=1``) and intercept standard logging."""
    logger.remove()
    logger.add(
        sys.stderr,
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

"""Built-in plugin: the ``opensearch`` sink (``OPENSEARCH_URL``, ``OPENSEARCH_INDEX_PREFIX``, ``OPENSEARCH_KNN_ENGINE``).

opensearch-py is imported only when the sink is built, so processes that use the embedded sink
never pay for it (and do not need the ``opensearch`` extra installed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pi_framework import hookimpl
from pi_framework.contract.sinks import SinkError
from pi_framework.settings import Settings

if TYPE_CHECKING:
    from pi_framework.sinks.opensearch.sink import OpenSearchSink


def create_sink(settings: Settings) -> OpenSearchSink:
    if not settings.OPENSEARCH_URL:
        raise SinkError("the opensearch sink needs OPENSEARCH_URL (e.g. http://user:password@host:9200)")
    from pi_framework.sinks.opensearch.sink import OpenSearchSink

    return OpenSearchSink(settings.OPENSEARCH_URL, settings.OPENSEARCH_INDEX_PREFIX, knn_engine=settings.OPENSEARCH_KNN_ENGINE)


@hookimpl
def register_sinks(register: Callable[[str, Callable[[Settings], Any]], None]) -> None:
    register("opensearch", create_sink)

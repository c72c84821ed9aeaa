"""Every environment variable pi-framework reads, in one pydantic model.

`load_settings()` is the only entry point: it turns a validation error into a
one-line :class:`SettingsError` naming the variable and what it accepts, so a
typo stops start-up with a message an operator can act on.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# redact_url lives in pi_framework.redaction; it stays importable from here for code that imported it here
from pi_framework.redaction import MASK, is_secret_name, redact_text, redact_url

DEFAULT_QUEUE = "plane_pi_queue"


class SettingsError(ValueError):
    """A variable has a value pi-framework cannot use."""


def _csv(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return list(value)  # type: ignore[arg-type]


class Settings(BaseSettings):
    """Configuration of a worker, beat or CLI process (read from the environment)."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", populate_by_name=True)

    # --- storage
    PI_DATA_DIR: Path = Field(default=Path(".pi-data"), description="Folder of the embedded defaults (SQLite files, model).")
    PI_DATABASE_URL: str | None = Field(default=None, description="PI database; default sqlite under PI_DATA_DIR.")
    PLANE_DATABASE_URL: str | None = Field(default=None, description="Plane's PostgreSQL (read only).")
    PI_DB_POOL_SIZE: PositiveInt = Field(default=5, description="Connections kept per process (PostgreSQL).")
    PI_DB_MAX_OVERFLOW: int = Field(default=10, ge=0, description="Extra connections a process may open under load.")
    PI_DB_BREAKER_THRESHOLD: PositiveInt = Field(default=5, description="Consecutive connection failures that open the breaker.")
    PI_DB_BREAKER_COOLDOWN: float = Field(default=30.0, gt=0, description="Seconds before an open breaker half-opens.")

    # --- celery
    CELERY_BROKER_URL: str | None = Field(
        default=None,
        description="Broker; production pyamqp://guest@localhost:5672//; unset = embedded SQLite broker under PI_DATA_DIR.",
    )
    PI_EMBEDDED_BROKER_VISIBILITY_TIMEOUT: PositiveInt = Field(
        default=60,
        description="Seconds a message fetched from the embedded broker may go unrenewed before it is delivered again: "
        "a killed worker's tasks return after at most this long; a live worker renews what it holds every quarter of it, "
        "so longer tasks are not delivered twice.",
    )
    CELERY_RESULT_BACKEND: str | None = Field(
        default=None, description="Result backend; unset = no results stored (tasks are fire-and-forget)."
    )
    CELERY_DEFAULT_QUEUE: str = Field(default=DEFAULT_QUEUE, description="Queue every task is sent to and the worker consumes.")
    CELERY_VECTOR_SYNC_ENABLED: bool = Field(default=True, description="Beat entry trigger-live-sync on/off.")
    CELERY_VECTOR_SYNC_INTERVAL: PositiveInt = Field(default=30, description="Seconds between live-sync ticks.")
    CELERY_VECTOR_SYNC_MAX_RETRIES: int = Field(default=3, ge=0, description="Retries of a failed process_workspace_live_sync.")
    CELERY_VECTOR_SYNC_RETRY_DELAY: PositiveInt = Field(
        default=30, description="Seconds before the first live-sync retry (exponential backoff with jitter after)."
    )
    PI_REAPER_INTERVAL: PositiveInt = Field(default=86400, description="Seconds between stuck-job reaper runs.")
    PI_REDISPATCH_INTERVAL: PositiveInt = Field(default=60, description="Seconds between passes that re-dispatch lost jobs.")

    # --- plugins
    PI_LOAD_PLUGINS: list[str] = Field(default_factory=list, description="Allow-list of plugin names.")
    PI_DISABLE_PLUGINS: list[str] = Field(default_factory=list, description="Deny-list of plugin names.")

    # --- logging
    PI_LOG_JSON: bool = Field(default=False, description="Log JSON lines instead of text.")
    PI_LOG_LEVEL: str = Field(default="INFO", description="Minimum log level.")

    # --- pipeline
    PI_EMBEDDER: str = Field(default="fastembed", description="Name of the embedder plugin to use.")
    PI_EMBEDDING_MODEL: str = Field(
        default="sentence-transformers/all-MiniLM-L6-v2",
        description="fastembed model; the default is assembled offline from PyPI packages, others need a model hub.",
    )
    PI_EMBEDDING_BATCH_SIZE: PositiveInt = Field(default=64, description="Texts per embedding batch (64 was fastest on 2 cores).")
    PI_EMBEDDING_THREADS: PositiveInt | None = Field(
        default=None, description="onnxruntime threads per process; unset = onnxruntime's default."
    )
    PI_GENERATION_CHECK_SECONDS: PositiveFloat = Field(
        default=5.0,
        description="How often a process re-reads which index generation is live (a model change's swap reaches every "
        "process within this).",
    )
    PI_GENERATION_INTERVAL: PositiveInt = Field(
        default=30, description="Seconds between passes that start, copy, swap and drop index generations."
    )
    PI_GENERATION_GRACE_SECONDS: PositiveInt = Field(
        default=600, description="Seconds a replaced index generation is kept before its storage is dropped."
    )
    PI_CHUNK_TOKENS: PositiveInt = Field(default=256, description="Chunk window in model tokens (the default model's limit).")
    PI_CHUNK_OVERLAP: int = Field(default=32, ge=0, description="Tokens shared by consecutive chunks.")
    PI_MAX_CHUNKS_PER_DOCUMENT: PositiveInt = Field(
        default=200, description="Chunks kept of a huge document; the rest is dropped with a warning."
    )
    PI_MAX_DOCUMENT_CHARS: PositiveInt = Field(
        default=1_000_000,
        description="Characters of a document's body (and title) normalised; the rest is cut with a warning.",
    )
    PI_RERANKER_PATH: Path | None = Field(
        default=None,
        description="Cross-encoder re-ranker in ONNX (a folder with model.onnx and tokenizer.json); unset = fusion alone.",
    )
    PI_RERANK_CANDIDATES: PositiveInt = Field(
        default=20, description="Fused results (one per document) the re-ranker scores, when PI_RERANKER_PATH is set."
    )
    PI_SEARCH_FUSION: Literal["rrf", "convex"] = Field(
        default="rrf",
        description="How hybrid search merges BM25 and kNN: rrf (reciprocal rank fusion) or convex (the mean of "
        "min-max normalised scores; see Retrieval quality in the README).",
    )
    PI_SINKS: list[str] = Field(
        default_factory=list, description="Sinks to write to; default opensearch if OPENSEARCH_URL else embedded."
    )
    OPENSEARCH_URL: str | None = Field(default=None, description="OpenSearch cluster; set = the opensearch sink is the default.")
    OPENSEARCH_INDEX_PREFIX: str = Field(default="pi", description="Indices are <prefix>-<kind>.")
    OPENSEARCH_KNN_ENGINE: Literal["lucene", "faiss"] = Field(
        default="lucene",
        description="k-NN engine of new indices' vector field: lucene (pure Java, works on any k-NN plugin) or faiss "
        "(needs the plugin's native libraries); existing indices keep theirs.",
    )

    # --- workspace sync
    PI_MAX_CONCURRENT_VECTORIZATIONS: PositiveInt = Field(
        default=2, description="Vectorization jobs running at once (the rest wait queued)."
    )
    PI_LIVE_SYNC_MAX_MISSING: int = Field(
        default=50,
        ge=0,
        description="Pending changes a live sync takes; above this a bulk re-feed (a vectorization job) is queued at once.",
    )
    PI_JOB_RETRY_DELAY: PositiveInt = Field(
        default=60, description="Seconds before a failed vectorization job is retried; doubles per failure in a row (max 6 h)."
    )
    PI_DOCUMENT_RETRIES: PositiveInt = Field(
        default=3,
        description="Live syncs that retry a refused document from the cursor before it is parked: logged at ERROR, the cursor moves on, it stays pending and is retried with backoff.",
    )
    PI_LEASE_SECONDS: PositiveInt = Field(
        default=30,
        description="A workspace's write lease; renewed while a sync progresses, so a killed worker's workspace is free again this fast.",
    )
    PI_PENDING_ALERT_SECONDS: PositiveInt = Field(
        default=300, description="Pending work older than this makes the pending_work health check fail (pi status says why)."
    )
    PI_VECTORIZED_PLANS: list[str] = Field(
        default_factory=lambda: ["PRO", "BUSINESS"], description="Plans that get vectorization (case-insensitive)."
    )
    PI_STUCK_JOB_TIMEOUT_MINUTES: PositiveInt = Field(
        default=5760, description="A queued/running job with no progress this long is failed by the reaper."
    )
    PI_HEARTBEAT_TIMEOUT_SECONDS: PositiveInt = Field(default=600, description="A running job silent this long is re-queued.")
    PI_SYNC_OVERLAP_SECONDS: int = Field(
        default=120, ge=0, description="Change scans re-read this much before the watermark (late commits, clock skew)."
    )
    PI_RECONCILE_INTERVAL: PositiveInt = Field(
        default=3600, description="Seconds between id reconciles of a live-synced workspace (hard deletes)."
    )

    # --- change feed (logical replication from Plane's PostgreSQL; polling stays on as the safety net)
    PI_CHANGEFEED_ENABLED: bool = Field(
        default=True,
        description="Workers run the change feed (one process at a time, under a lease) once pi changefeed setup made the "
        "publication and slot; 0 = polling updated_at only.",
    )
    PI_CHANGEFEED_DATABASE_URL: str | None = Field(
        default=None,
        description="Plane's PostgreSQL as a role with the REPLICATION attribute, for the change feed; unset = PLANE_DATABASE_URL.",
    )
    PI_CHANGEFEED_SLOT: str = Field(default="pi_changefeed", description="Logical replication slot of the change feed (pgoutput).")
    PI_CHANGEFEED_PUBLICATION: str = Field(
        default="pi_changefeed", description="Publication of the change feed: the tables the installed sources watch."
    )
    PI_CHANGEFEED_MAX_LAG_BYTES: PositiveInt = Field(
        default=1073741824,
        description="WAL a slot may hold back before it is dropped (then recreated, with a full compare of every live "
        "workspace, logged at ERROR): Plane's disk never fills.",
    )
    PI_CHANGEFEED_BATCH_SECONDS: float = Field(
        default=0.05, gt=0, description="Seconds received changes wait to be flagged together (one PI database commit, one confirm)."
    )
    PI_CHANGEFEED_FEEDBACK_SECONDS: float = Field(
        default=5.0, gt=0, description="Seconds between confirmations to PostgreSQL, idle or not (retained WAL stays bounded)."
    )
    PI_CHANGEFEED_LAG_CHECK_SECONDS: float = Field(
        default=30.0, gt=0, description="Seconds between slot lag checks (status, metric, the drop above PI_CHANGEFEED_MAX_LAG_BYTES)."
    )

    # --- search access
    PI_ACCESS_CACHE_TTL: float = Field(
        default=5.0,
        ge=0,
        description="Seconds a user's project access read from Plane is reused by search (0 = read it on every query).",
    )

    # --- metrics and events
    PI_METRICS_PORT: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of the Prometheus endpoint /metrics that pi worker serves (and pi metrics' default); set = worker "
        "processes record metrics (needs the metrics extra). Unset = off.",
    )
    PI_METRICS_DIR: Path | None = Field(
        default=None,
        description="Folder where a machine's worker processes keep their metrics (prometheus_client multiprocess mode); "
        "default PI_DATA_DIR/metrics. Set (or PI_METRICS_PORT) = worker processes record metrics.",
    )
    PI_METRICS_MAX_WORKSPACES: int = Field(
        default=200,
        ge=0,
        description="Per-workspace series (freshness, pending changes, job progress) while at most this many workspaces are "
        "live-synced; above it only the aggregates.",
    )
    PI_TASK_EVENTS: bool = Field(
        default=False,
        description="Workers send Celery task events (as celery worker -E) for celery events and Flower; chat text never in them.",
    )

    @field_validator("PI_LOAD_PLUGINS", "PI_DISABLE_PLUGINS", "PI_SINKS", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> list[str]:
        return _csv(value)

    @field_validator("PI_VECTORIZED_PLANS", mode="before")
    @classmethod
    def _plans(cls, value: object) -> list[str]:
        return [plan.upper() for plan in _csv(value)]

    # pydantic-settings would JSON-decode list fields; we want plain comma lists.
    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):  # noqa: D102
        return (init_settings, _CsvEnvSource(settings_cls))

    # ----------------------------------------------------------------- derived values
    @property
    def data_dir(self) -> Path:
        self.PI_DATA_DIR.mkdir(parents=True, exist_ok=True)
        return self.PI_DATA_DIR

    @property
    def database_url(self) -> str:
        return self.PI_DATABASE_URL or f"sqlite:///{(self.data_dir / 'pi.sqlite').resolve()}"

    @property
    def broker_url(self) -> str:
        return self.CELERY_BROKER_URL or f"sqla+sqlite:///{(self.data_dir / 'broker.sqlite').resolve()}"

    @property
    def broker_is_embedded(self) -> bool:
        return not self.CELERY_BROKER_URL

    @property
    def sink_names(self) -> list[str]:
        if self.PI_SINKS:
            return self.PI_SINKS
        return ["opensearch"] if self.OPENSEARCH_URL else ["embedded"]

    def redacted(self) -> dict[str, object]:
        """Settings as a dict that is safe to print: secrets masked, URLs without passwords."""
        return redacted_values(self)


def redacted_values(model: BaseSettings) -> dict[str, object]:
    """A settings model's values as a dict that is safe to print: secrets masked, URLs without passwords."""
    out: dict[str, object] = {}
    for name, value in model.model_dump().items():
        if isinstance(value, SecretStr):
            value = MASK if value.get_secret_value() else ""
        elif isinstance(value, str) and value and is_secret_name(name):
            value = MASK
        elif isinstance(value, str):
            value = redact_url(value)
        elif isinstance(value, list):
            value = [redact_url(item) if isinstance(item, str) else item for item in value]
        elif isinstance(value, Path):
            value = str(value)
        out[name] = value
    return out

class PluginSettings(BaseSettings):
    """Base of a plugin's settings model (``register_settings``): read from the environment like :class:`Settings`.

    Variable names are the field names, case-sensitive; no ``.env`` file is read (as for the core's); list fields
    take plain comma-separated values (``split_csv`` in a ``mode="before"`` validator does the splitting).
    """

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", populate_by_name=True)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):  # noqa: D102
        return (init_settings, _CsvEnvSource(settings_cls))

    def redacted(self) -> dict[str, object]:
        """The values as a dict that is safe to print (as :meth:`Settings.redacted`)."""
        return redacted_values(self)


def split_csv(value: object) -> list[str]:
    """A comma-separated variable as a list (empty items dropped): for list fields of a :class:`PluginSettings`."""
    return _csv(value)


class _CsvEnvSource:
    """Environment source that hands raw strings to the validators (no JSON decoding)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        self.fields = settings_cls.model_fields

    def __call__(self) -> dict[str, str]:
        return {name: os.environ[name] for name in self.fields if name in os.environ and os.environ[name] != ""}


def describe_variables(model: type[BaseSettings]) -> list[tuple[str, str, str]]:
    """``(name, default, description)`` of every variable, for ``pi settings --markdown``."""
    rows = []
    for name, field in model.model_fields.items():
        default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
        if isinstance(default, list):
            default = ",".join(default)
        shown = "unset" if default in (None, "") else f"`{redact_url(str(default))}`"
        rows.append((name, shown, field.description or ""))
    return rows


_ACCEPTS = {
    "int_parsing": "an integer",
    "greater_than": "a number greater than {gt}",
    "greater_than_equal": "a number >= {ge}",
    "bool_parsing": "a boolean (1/0, true/false)",
    "float_parsing": "a number",
    "literal_error": "{expected}",
}


def _describe(error: dict) -> str:
    name = ".".join(str(part) for part in error["loc"])
    fallback = error["msg"].removeprefix("Input should be ")  # pydantic's "Input should be X" reads "expected X" here
    accepts = _ACCEPTS.get(error["type"], fallback.replace("{", "{{").replace("}", "}}")).format(**(error.get("ctx") or {}))
    value = error.get("input")
    shown = MASK if is_secret_name(name) else value
    if isinstance(shown, str):
        shown = redact_text(shown)
    return f"{name}={shown!r} is invalid: expected {accepts}"


def load_settings(**overrides: object) -> Settings:
    """Read the environment (plus *overrides*); raise :class:`SettingsError` with one clear line on a bad value."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError("; ".join(_describe(error) for error in exc.errors())) from None


def load_model(model: type[BaseSettings]) -> BaseSettings:
    """Build a plugin's settings *model* from the environment; a bad value is one :class:`SettingsError` line."""
    try:
        return model()
    except ValidationError as exc:
        raise SettingsError("; ".join(_describe(error) for error in exc.errors())) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once. Tests call ``get_settings.cache_clear()`` after changing the environment."""
    return load_settings()

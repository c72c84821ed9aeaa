"""Every environment variable pi-framework reads, in one pydantic model.

`load_settings()` is the only entry point: it turns a validation error into a
one-line :class:`SettingsError` naming the variable and what it accepts, so a
typo stops start-up with a message an operator can act on.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, PositiveInt, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_QUEUE = "plane_pi_queue"


class SettingsError(ValueError):
    """A variable has a value pi-framework cannot use."""


def redact_url(url: str | None) -> str | None:
    """Return *url* with any password replaced by ``***`` (safe to log)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


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
    PI_DB_POOL_SIZE: PositiveInt = 5
    PI_DB_MAX_OVERFLOW: int = Field(default=10, ge=0)
    PI_DB_BREAKER_THRESHOLD: PositiveInt = Field(default=5, description="Consecutive connection failures that open the breaker.")
    PI_DB_BREAKER_COOLDOWN: float = Field(default=30.0, gt=0, description="Seconds before an open breaker half-opens.")

    # --- celery
    CELERY_BROKER_URL: str | None = None
    CELERY_RESULT_BACKEND: str | None = None
    CELERY_DEFAULT_QUEUE: str = DEFAULT_QUEUE
    CELERY_VECTOR_SYNC_ENABLED: bool = True
    CELERY_VECTOR_SYNC_INTERVAL: PositiveInt = 30
    CELERY_VECTOR_SYNC_MAX_RETRIES: int = Field(default=3, ge=0)
    CELERY_VECTOR_SYNC_RETRY_DELAY: PositiveInt = 30
    CELERY_DOCS_SYNC_ENABLED: bool = True
    CELERY_DOCS_SYNC_INTERVAL: PositiveInt = 86400
    CELERY_WORKSPACE_PLAN_SYNC_ENABLED: bool = True
    CELERY_WORKSPACE_PLAN_SYNC_INTERVAL: PositiveInt = 86400
    PI_REAPER_INTERVAL: PositiveInt = Field(default=86400, description="Seconds between stuck-job reaper runs.")
    PI_REDISPATCH_INTERVAL: PositiveInt = Field(default=60, description="Seconds between passes that re-dispatch lost jobs.")

    # --- plugins
    PI_LOAD_PLUGINS: list[str] = Field(default_factory=list, description="Allow-list of plugin names.")
    PI_DISABLE_PLUGINS: list[str] = Field(default_factory=list, description="Deny-list of plugin names.")

    # --- logging
    PI_LOG_JSON: bool = False
    PI_LOG_LEVEL: str = "INFO"

    # --- pipeline
    PI_EMBEDDER: str = Field(default="fastembed", description="Name of the embedder plugin to use.")
    PI_EMBEDDING_MODEL: str = "sentence-transformers/all-MiniLM-L6-v2"
    PI_EMBEDDING_BATCH_SIZE: PositiveInt = 64
    PI_EMBEDDING_THREADS: PositiveInt | None = None
    PI_CHUNK_TOKENS: PositiveInt = 256
    PI_CHUNK_OVERLAP: int = Field(default=32, ge=0)
    PI_MAX_CHUNKS_PER_DOCUMENT: PositiveInt = Field(
        default=200, description="Chunks kept of a huge document; the rest is dropped with a warning."
    )
    PI_SINKS: list[str] = Field(
        default_factory=list, description="Sinks to write to; default opensearch if OPENSEARCH_URL else embedded."
    )
    OPENSEARCH_URL: str | None = None
    OPENSEARCH_INDEX_PREFIX: str = "pi"

    # --- workspace sync
    PI_MAX_CONCURRENT_VECTORIZATIONS: PositiveInt = 2
    PI_LIVE_SYNC_MAX_MISSING: int = Field(default=50, ge=0)
    PI_VECTORIZED_PLANS: list[str] = Field(default_factory=lambda: ["PRO", "BUSINESS"])
    PI_STUCK_JOB_TIMEOUT_MINUTES: PositiveInt = 5760
    PI_HEARTBEAT_TIMEOUT_SECONDS: PositiveInt = Field(default=600, description="A running job silent this long is re-queued.")
    PI_SYNC_OVERLAP_SECONDS: int = Field(
        default=120, ge=0, description="Change scans re-read this much before the watermark (late commits, clock skew)."
    )
    PI_RECONCILE_INTERVAL: PositiveInt = Field(
        default=3600, description="Seconds between id reconciles of a live-synced workspace (hard deletes)."
    )

    # --- docs
    PI_DOCS_REPOS: list[str] = Field(default_factory=list)
    GITHUB_TOKEN: SecretStr | None = None
    PI_GITHUB_API_URL: str = "https://api.github.com"
    PI_GITHUB_RAW_URL: str = "https://raw.githubusercontent.com"
    PI_GITHUB_TIMEOUT: float = Field(default=30.0, gt=0, description="Seconds before a GitHub request times out.")
    PI_GITHUB_RETRIES: int = Field(default=4, ge=0, description="Retries of a GitHub request after a 5xx, timeout or rate limit.")
    PI_GITHUB_BACKOFF: float = Field(default=2.0, ge=0, description="First retry delay in seconds (doubles each retry).")
    PI_GITHUB_MAX_WAIT: float = Field(default=900.0, ge=0, description="Max total rate-limit wait per request, then give up.")

    # --- chats
    PI_CHATS_SEMANTIC: bool = True

    @field_validator("PI_LOAD_PLUGINS", "PI_DISABLE_PLUGINS", "PI_SINKS", "PI_DOCS_REPOS", mode="before")
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
        out: dict[str, object] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                value = "***" if value.get_secret_value() else ""
            elif isinstance(value, str) and "://" in value:
                value = redact_url(value)
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out


class _CsvEnvSource:
    """Environment source that hands raw strings to the validators (no JSON decoding)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        self.fields = settings_cls.model_fields

    def __call__(self) -> dict[str, str]:
        return {name: os.environ[name] for name in self.fields if name in os.environ and os.environ[name] != ""}


_ACCEPTS = {
    "int_parsing": "an integer",
    "greater_than": "a number greater than {gt}",
    "greater_than_equal": "a number >= {ge}",
    "bool_parsing": "a boolean (1/0, true/false)",
    "float_parsing": "a number",
}


def _describe(error: dict) -> str:
    name = ".".join(str(part) for part in error["loc"])
    accepts = _ACCEPTS.get(error["type"], error["msg"]).format(**(error.get("ctx") or {}))
    value = error.get("input")
    shown = "***" if any(word in name for word in ("TOKEN", "PASSWORD", "SECRET")) else value
    if isinstance(shown, str) and "://" in shown:
        shown = redact_url(shown)
    return f"{name}={shown!r} is invalid: expected {accepts}"


def load_settings(**overrides: object) -> Settings:
    """Read the environment (plus *overrides*); raise :class:`SettingsError` with one clear line on a bad value."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError("; ".join(_describe(error) for error in exc.errors())) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once. Tests call ``get_settings.cache_clear()`` after changing the environment."""
    return load_settings()

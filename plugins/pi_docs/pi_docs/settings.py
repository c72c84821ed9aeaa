"""The variables of ``pi_docs`` (registered with ``register_settings``; ``pi settings`` shows them, the token masked)."""

from __future__ import annotations

from pydantic import Field, PositiveInt, SecretStr, field_validator

from pi_framework.api import PluginSettings, plugin_settings, split_csv


class DocsSettings(PluginSettings):
    """Which repositories, how to reach GitHub, and the sync's beat entry."""

    PI_DOCS_REPOS: list[str] = Field(
        default_factory=list, description="owner/repo[@branch][:path-prefix] or file:///path entries, comma separated."
    )
    GITHUB_TOKEN: SecretStr | None = Field(default=None, description="Sent as Authorization: Bearer; never logged.")
    PI_GITHUB_API_URL: str = Field(default="https://api.github.com", description="GitHub API (GitHub Enterprise, tests).")
    PI_GITHUB_RAW_URL: str = Field(default="https://raw.githubusercontent.com", description="Host of raw file contents.")
    PI_GITHUB_TIMEOUT: float = Field(default=30.0, gt=0, description="Seconds before a GitHub request times out.")
    PI_GITHUB_RETRIES: int = Field(default=4, ge=0, description="Retries of a GitHub request after a 5xx, timeout or rate limit.")
    PI_GITHUB_BACKOFF: float = Field(default=2.0, ge=0, description="First retry delay in seconds (doubles each retry).")
    PI_GITHUB_MAX_WAIT: float = Field(default=900.0, ge=0, description="Max total rate-limit wait per request, then give up.")
    CELERY_DOCS_SYNC_ENABLED: bool = Field(default=True, description="Beat entry sync-docs-periodic on/off.")
    CELERY_DOCS_SYNC_INTERVAL: PositiveInt = Field(default=86400, description="Seconds between documentation syncs.")

    @field_validator("PI_DOCS_REPOS", mode="before")
    @classmethod
    def _repos(cls, value: object) -> list[str]:
        return split_csv(value)


def docs_settings() -> DocsSettings:
    """This process's docs settings (built and validated when the plugins were loaded)."""
    return plugin_settings(DocsSettings)

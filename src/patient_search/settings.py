"""The service's one settings class: environment variables prefixed PATIENT_SEARCH_, or `.env`."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, PostgresDsn, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_BYTES = 32
PLACEHOLDER_SECRETS = frozenset({"", "change-me", "changeme", "secret", "dev"})


class SettingsError(ValueError):
    """The configuration cannot run the service; the message says which setting and why."""


class Settings(BaseSettings):
    """Every knob the service has; names are part of the deployment contract."""

    model_config = SettingsConfigDict(
        env_prefix="PATIENT_SEARCH_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
    )

    env: Literal["dev", "production"] = "production"
    database_url: PostgresDsn = PostgresDsn("postgresql://postgres@127.0.0.1:55432/patient_search")
    # What `patient-search migrate` logs in as (it owns the schema); empty: database_url.
    # Everything else logs in as database_url, which production gives an ordinary role that
    # is only a member of patient_search_app (docs/operations.md).
    migration_database_url: PostgresDsn | None = None
    # Empty means "no Redis": an in-process cache serves a single worker.
    redis_url: str = ""
    jwt_secret: str = ""
    jwt_issuer: str | None = None
    jwt_audience: str | None = None

    db_pool_min: int = Field(5, ge=1, le=1000)
    db_pool_max: int = Field(20, ge=1, le=1000)
    db_pool_acquire_timeout_s: float = Field(30.0, gt=0, le=3600)
    db_pool_idle_timeout_s: float = Field(600.0, gt=0)
    # A runaway statement must not hold a pooled connection for ever.
    db_statement_timeout_ms: int = Field(5000, ge=0)
    # libpq connect_timeout: a silent host costs this long per attempt, not psycopg's 130 s.
    db_connect_timeout_s: int = Field(3, ge=1, le=60)

    # Caching: lifetimes are the mission's; Redis calls give up after redis_timeout_ms.
    cache_enabled: bool = True
    cache_profile_ttl_s: float = Field(300.0, gt=0, le=86400)
    cache_summary_ttl_s: float = Field(600.0, gt=0, le=86400)
    cache_search_ttl_s: float = Field(120.0, gt=0, le=86400)
    cache_refresh_ahead_fraction: float = Field(0.25, ge=0, lt=1)
    cache_memory_max_entries: int = Field(10_000, ge=1)
    redis_timeout_ms: float = Field(50.0, gt=0, le=10_000)
    cache_breaker_cooldown_s: float = Field(1.0, gt=0, le=600)

    slow_query_ms: float = Field(100.0, ge=0)
    phone_region: str = Field("US", min_length=2, max_length=2, pattern="^[A-Z]{2}$")
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    # Per user (token sub + clinic) on search; 0 turns the limit off.
    search_rate_per_minute: int = Field(600, ge=0, le=1_000_000)
    # At most db_pool_max is used: a burst larger than the pool would only queue on it.
    search_rate_burst: int = Field(20, ge=1, le=100_000)
    # Database searches of one clinic at once, per worker (0: unbounded); the next wait this
    # long for a slot, then get 503 + Retry-After.
    search_concurrency_per_clinic: int = Field(4, ge=0, le=1000)
    search_queue_wait_ms: int = Field(500, ge=0, le=30_000)
    # Wait for the WAL flush of every view's audit entry (writes' entries always do); also
    # turns the audit journal off, since its entries reach the table after the response.
    audit_durable_views: bool = False
    # auto: a Redis cache hit's audit entry is appended to a stream with the read, when that
    # Redis never evicts it (docs/decisions/0014); off: every view commits its own entry.
    audit_journal: Literal["auto", "off"] = "auto"
    # SIGTERM: in-flight requests get this long to finish before the server closes them.
    shutdown_grace_s: int = Field(20, ge=1, le=3600)

    # Observability (docs/operations.md). METRICS_PORT 0 serves /metrics on the API port.
    metrics_enabled: bool = True
    metrics_port: int = Field(0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # Empty disables the in-process slow-query alert; otherwise an http(s) URL.
    alert_webhook_url: str = Field("", pattern=r"^(https?://\S+)?$")
    alert_slow_query_threshold: int = Field(20, ge=1)
    alert_window_s: float = Field(60.0, gt=0)
    alert_min_interval_s: float = Field(300.0, ge=0)
    cloudwatch_emf: bool = False
    cloudwatch_namespace: str = Field("PatientSearch", min_length=1, max_length=255)

    @field_validator("migration_database_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.db_pool_min > self.db_pool_max:
            raise ValueError("DB_POOL_MIN must not exceed DB_POOL_MAX")
        return self

    def require_runnable(self) -> None:
        """Refuse to serve with a missing or weak JWT secret outside dev."""
        if self.env == "dev":
            return
        secret = self.jwt_secret
        if secret.strip().lower() in PLACEHOLDER_SECRETS:
            raise SettingsError(
                "PATIENT_SEARCH_JWT_SECRET is missing or a placeholder; "
                "set a random secret of at least 32 bytes (or PATIENT_SEARCH_ENV=dev)"
            )
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise SettingsError(
                f"PATIENT_SEARCH_JWT_SECRET is {len(secret.encode())} bytes; "
                f"at least {MIN_SECRET_BYTES} are required outside dev"
            )

    @property
    def migration_conninfo(self) -> str:
        """The libpq connection string `migrate` uses."""
        return str(self.migration_database_url or self.database_url)

    @property
    def effective_jwt_secret(self) -> str:
        """The signing secret; dev without one gets a fixed, loudly insecure default."""
        return self.jwt_secret or "insecure-dev-secret-do-not-use-in-production!"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process."""
    return Settings()

"""Configuration: one settings class, read from `MODELREG_*` environment variables."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_DATABASE_SCHEMES = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str


class Settings(BaseSettings):
    """Every knob of the service. Unset values fall back to the embedded default."""

    model_config = SettingsConfigDict(env_prefix="MODELREG_", extra="ignore")

    data_dir: Path = Path("data")
    database_url: str | None = None
    redis_url: str | None = None
    artifacts: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # On start, creates the administrator with this token when no administrator exists.
    bootstrap_admin_token: str | None = Field(default=None, min_length=20)
    # Soft-deleted runs are purged this many days after their deletion; 0 purges all.
    deleted_run_retention_days: float = Field(default=30, ge=0)
    # A failed job waits min(2**attempts * base, max) seconds before its next attempt.
    job_retry_base_seconds: float = Field(default=10, ge=0)
    job_retry_max_seconds: float = Field(default=3600, ge=0)
    # A job pushed to Redis this long ago that has not started is pushed again by the sweep
    # (Redis may have lost it); a push of a job still queued changes nothing.
    job_requeue_after_seconds: float = Field(default=30, ge=0)
    # How often the sweep looks for due jobs (in each worker; without Redis, in the server).
    job_poll_interval_seconds: float = Field(default=10, gt=0)
    # A running job's claim lasts this long unless its runner's heartbeat renews it (every
    # third of it): a job whose worker was killed is taken over this long (+ a sweep) later.
    job_lease_seconds: float = Field(default=45, gt=0)
    # The largest upload (package API, MLflow artifact proxy), in bytes (413 above it).
    max_upload_size: int = Field(default=10 * 1024**3, gt=0)
    # A request body that sends nothing for this long is cut off (408).
    body_idle_timeout_seconds: float = Field(default=10, gt=0)
    # A JSON request body must arrive whole within this time (408); uploads have no deadline.
    body_read_timeout_seconds: float = Field(default=30, gt=0)
    # Links the server hands out start with this URL (https://models.example.com); unset,
    # they are paths from the server's root. Never built from the request's Host header.
    external_url: str | None = None
    # Behind a proxy that sets them: links use X-Forwarded-Proto/Host when external_url is unset.
    trusted_proxy_headers: bool = False
    # When set, /metrics (and the worker's metrics port) answer only `Bearer <this token>`.
    metrics_token: str | None = None
    # `modelreg worker` serves its job metrics on this port when set (none by default).
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    # A browser sign-in lasts this many days (a fixed term from the sign-in, not sliding).
    session_lifetime_days: float = Field(default=14, gt=0)
    # Sign-in attempts that did not succeed: a username (or a client address) that made this
    # many within the window is refused (429) until the window ends.
    sign_in_attempts: int = Field(default=10, ge=1)
    sign_in_address_attempts: int = Field(default=100, ge=1)
    sign_in_window_seconds: float = Field(default=900, gt=0)
    # Password sign-ins checked at once per API process (0: the number of CPUs); one that
    # would wait longer than password_check_wait_seconds for its turn is refused (503).
    password_checks_at_once: int = Field(default=0, ge=0)
    password_check_wait_seconds: float = Field(default=5, ge=0)
    # Open GraphQL subscription websockets per API process, and per caller (a user, or an
    # anonymous client address); a connection beyond either is closed with 4429.
    subscription_connections: int = Field(default=1000, ge=1)
    subscription_connections_per_caller: int = Field(default=20, ge=1)
    # Comma-separated origins (https://app.example.com) whose pages may call /graphql with
    # a token; never with cookies (no credentials are allowed). None by default.
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # The server's key: webhook secrets (and the source tokens of MLflow import jobs until
    # they end) are stored encrypted with a key derived from it.
    # Unset, webhooks can be created without a secret only (their requests go unsigned).
    secret_key: str | None = Field(default=None, min_length=16)
    # Webhooks to loopback, private and link-local addresses are refused unless this is set.
    webhook_allow_private: bool = False
    # One webhook request (connect, send, answer) must finish within this time.
    webhook_timeout_seconds: float = Field(default=10, gt=0)
    # A failed delivery waits min(2**(attempts-1) * base, max) seconds, jittered down to
    # half of it (or what Retry-After asks), and is retried until it is this old.
    webhook_retry_base_seconds: float = Field(default=30, gt=0)
    webhook_retry_max_seconds: float = Field(default=3 * 3600, gt=0)
    webhook_retry_window_seconds: float = Field(default=24 * 3600, ge=0)

    @field_validator("database_url")
    @classmethod
    def _database_url_uses_a_supported_driver(cls, value: str | None) -> str | None:
        if not value:
            return None
        scheme, separator, rest = value.partition("://")
        if not separator or scheme not in _DATABASE_SCHEMES:
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return f"{_DATABASE_SCHEMES[scheme]}://{rest}"

    @field_validator("metrics_token")
    @classmethod
    def _empty_metrics_token_means_open(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("external_url")
    @classmethod
    def _external_url_is_a_base_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parsed = urllib.parse.urlsplit(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError("must be an http:// or https:// URL, e.g. https://models.example.com")
        if parsed.query or parsed.fragment:
            raise ValueError("must not have a query or a fragment")
        return value.rstrip("/")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _cors_origins_are_origins(cls, value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, list | tuple):
            raise ValueError("must be a comma-separated list of origins")
        origins = []
        for origin in value:
            parsed = urllib.parse.urlsplit(str(origin))
            if (
                parsed.scheme not in ("http", "https")
                or not parsed.netloc
                or parsed.path
                or parsed.query
                or parsed.fragment
            ):
                raise ValueError(
                    f"'{origin}' is not an origin: write scheme://host[:port], "
                    "e.g. https://app.example.com"
                )
            origins.append(f"{parsed.scheme}://{parsed.netloc}")
        return tuple(origins)

    @field_validator("redis_url")
    @classmethod
    def _redis_url_is_redis(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// URL")
        return value

    @field_validator("artifacts")
    @classmethod
    def _artifacts_is_a_path_or_bucket(cls, value: str | None) -> str | None:
        if not value:
            return None
        if value.startswith("s3://"):
            bucket = value.removeprefix("s3://").split("/", 1)[0]
            if not bucket:
                raise ValueError("s3:// location needs a bucket: s3://bucket/prefix")
        elif "://" in value and not value.startswith("file://"):
            raise ValueError("must be a directory or an s3://bucket/prefix location")
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'modelreg.db').resolve()}"

    @property
    def s3_location(self) -> S3Location | None:
        """The S3 bucket and key prefix when artifacts go to S3, else None."""
        if not self.artifacts or not self.artifacts.startswith("s3://"):
            return None
        bucket, _, prefix = self.artifacts.removeprefix("s3://").partition("/")
        return S3Location(bucket=bucket, prefix=prefix.strip("/"))

    @property
    def artifact_directory(self) -> Path:
        """The local artifact directory (used when artifacts are not on S3)."""
        if self.artifacts and not self.artifacts.startswith("s3://"):
            return Path(self.artifacts.removeprefix("file://")).resolve()
        return (self.data_dir / "artifacts").resolve()

    @property
    def uses_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


class SettingsError(Exception):
    """A setting could not be parsed; the message names the environment variable."""


def load_settings() -> Settings:
    """Read the settings from the environment, turning validation errors into one line."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"invalid setting MODELREG_{field.upper()}: {message}") from None

"""The service's settings: one class, read from ``VIGIL_*`` environment variables."""

from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.models.registry import DEFAULT_ALIAS, NAME_PATTERN


class Settings(BaseSettings):
    """Every setting of the service. Each field is documented in the README's Settings table."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="ignore")

    model_path: Path = Field(
        Path("models/model.joblib"), description="Model artifact to load at start."
    )
    registry: Path = Field(
        Path("models"),
        description="Registry folder of named models: <name>/<version>/ and their aliases.",
    )
    default_model: str = Field(
        DEFAULT_ALIAS,
        pattern=f"^{NAME_PATTERN.pattern}$",
        description=(
            "The model the unnamed routes answer for; the artifact at model_path is served"
            " under this name."
        ),
    )
    registry_load: Literal["aliased", "all", "latest"] = Field(
        "aliased",
        description="Which versions of each model are loaded (aliased ones are always loaded).",
    )
    registry_latest: int = Field(
        1, ge=1, description="With registry_load=latest, how many newest versions per model."
    )
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on.")
    workers: int = Field(1, ge=1, le=64, description="Number of uvicorn worker processes.")
    metrics_dir: Path | None = Field(
        None,
        description=(
            "With several workers, where their metric files go (wiped at start);"
            " a fresh temporary folder when unset."
        ),
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="Log level of the service and uvicorn."
    )
    access_log: bool = Field(True, description="Log one line per request (costs throughput).")
    max_batch_rows: int = Field(
        10_000, ge=1, description="Most rows accepted by POST /predictions (more is 413)."
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest request body accepted (more is 413)."
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Turns on POST /admin/reload for callers that send it as a Bearer token.",
    )
    graceful_timeout: int = Field(
        30, ge=0, description="Seconds in-flight requests get to finish after SIGTERM."
    )
    max_url_bytes: int = Field(
        8192, ge=256, description="Longest request target, path and query (more is 414)."
    )
    max_header_bytes: int = Field(
        16384, ge=256, description="Largest single request header, name and value (more is 431)."
    )
    max_head_bytes: int = Field(
        65536, ge=1024, description="Largest request line and headers together (more is 431)."
    )
    header_timeout: float = Field(
        10.0,
        gt=0,
        description=(
            "Seconds a client has to send a request's head, from connecting or from the head's"
            " first bytes (408 and close after)."
        ),
    )
    body_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds a client has to send a request's body after its head (408 after).",
    )
    max_connections: int = Field(
        512,
        ge=1,
        description="Open connections per worker; one more is answered 503 and closed.",
    )
    inline_rows: int = Field(
        16,
        ge=0,
        description=(
            "Batches up to this many rows are scored on the event loop (microseconds);"
            " larger ones in a worker thread so the loop never blocks."
        ),
    )
    max_csv_line_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description=(
            "Longest line (or quoted multi-line record) the train, score and evaluate"
            " commands read from a CSV; longer is refused without reading it into memory."
        ),
    )
    training_concurrency: int = Field(
        1, ge=1, le=64, description="Most training jobs running at once (across all workers)."
    )
    training_timeout: float = Field(
        3600.0, gt=0, description="Seconds a training job may run before it is killed and failed."
    )
    max_upload_bytes: int = Field(
        100 * 1024 * 1024, ge=1024, description="Largest training upload accepted (more is 413)."
    )
    training_runner: bool = Field(
        True,
        description=(
            "Start the training-job runner process with the service (when admin_token turns"
            " the jobs API on); false: run python -m service.jobs yourself."
        ),
    )
    jobs_db: Path | None = Field(
        None,
        description="The job store (SQLite); unset: <registry>/.jobs/jobs.sqlite3.",
    )
    webhook_url: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="Where webhook events are POSTed (Standard Webhooks); unset: none are sent.",
    )
    webhook_secret: SecretStr | None = Field(
        None, description="Signing secret for webhooks: whsec_ followed by base64."
    )
    webhook_retry_schedule: str = Field(
        "0,5,300,1800,7200,18000,36000,36000",
        description="Seconds before each delivery attempt, comma-separated (jitter is added).",
    )
    anomaly_webhook_interval: float = Field(
        60.0, gt=0, description="At most one anomaly.detected delivery per model this often."
    )
    anomaly_webhook_models: str = Field(
        "",
        description=(
            "Models whose anomalies are sent as anomaly.detected webhooks, comma-separated"
            " (opt-in; empty: none)."
        ),
    )

    max_series_points: int = Field(
        100_000, ge=3, description="Most points in one POST /series/detect, all series together."
    )
    prometheus_url: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="Prometheus for watches and POST /series/detect's prometheus queries.",
    )
    prometheus_authorization_file: Path | None = Field(
        None,
        description=(
            "A file holding the Authorization header value sent to Prometheus"
            " (e.g. 'Basic ...'); unset: none."
        ),
    )
    prometheus_timeout: float = Field(
        5.0, gt=0, description="Seconds a query to Prometheus may take before it counts as failed."
    )
    watches: Path | None = Field(
        None, description="YAML file of watches: PromQL queries scored every step; unset: none."
    )

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret_format(cls, value: SecretStr | None) -> SecretStr | None:
        from service.jobs.signing import parse_secret

        if value is not None:
            parse_secret(value.get_secret_value())  # ValueError says what is wrong
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _retry_schedule_format(cls, value: str) -> str:
        from service.jobs.signing import parse_schedule

        parse_schedule(value)
        return value

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> Self:
        if self.webhook_url and self.webhook_secret is None:
            raise ValueError("VIGIL_WEBHOOK_URL is set but VIGIL_WEBHOOK_SECRET is not")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()

"""The service's settings: one class, read from ``VIGIL_*`` environment variables."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of the service. Each field is documented in the README's Settings table."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="ignore")

    model_path: Path = Field(
        Path("models/model.joblib"), description="Model artifact to load at start."
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


@lru_cache
def get_settings() -> Settings:
    return Settings()

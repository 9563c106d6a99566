"""One settings object, read from ``FRAUDSEQ_*`` variables, built once and passed down."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything a stage needs to know about where things are and how to run.

    Building it has no side effects: nothing is created, no global URI is set.
    """

    model_config = SettingsConfigDict(env_prefix="FRAUDSEQ_", extra="ignore")

    home: Path = Path(".fraudseq")
    landing: Path | None = None
    scores_url: str | None = None
    mlflow_tracking_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "FRAUDSEQ_MLFLOW_TRACKING_URI")
    )
    history_days: int = Field(default=30, ge=0)
    label_delay_days: int = Field(default=7, ge=0)
    alert_budget: int = Field(default=100, ge=0)
    window: int = Field(default=32, ge=1)
    model_name: str = "fraudseq-bilstm"
    experiment_name: str = "fraudseq"
    validation_days: int = Field(default=7, ge=1)
    train_days: int = Field(default=28, ge=2)
    score_parallelism: int = Field(default=1, ge=1)
    drift_threshold: float = 0.2
    shards: int = Field(default=1, ge=1, le=4096)
    shared_url: str | None = None

    # ---- derived locations (contract section 5) ----
    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def validated_dir(self) -> Path:
        return self.home_dir / "validated"

    @property
    def quarantine_dir(self) -> Path:
        return self.home_dir / "quarantine"

    @property
    def reports_dir(self) -> Path:
        return self.home_dir / "reports"

    @property
    def airflow_home(self) -> Path:
        return self.home_dir / "airflow"

    @property
    def scores_db_url(self) -> str:
        return self.scores_url or f"duckdb:///{self.home_dir / 'scores.duckdb'}"

    @property
    def shared_location(self) -> str:
        """fsspec URL where workers exchange data: published validated days, shard outputs."""
        return (self.shared_url or str(self.home_dir / "shared")).rstrip("/")

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home_dir / 'mlflow.db'}"

    def landing_dir(self) -> Path:
        from pipeline.errors import UsageError

        if self.landing is None:
            raise UsageError("no landing folder: pass --landing DIR or set FRAUDSEQ_LANDING")
        return self.landing.expanduser().resolve()

    def history_range(self, day: date) -> list[date]:
        """The context days before ``day``, oldest first."""
        return [day - timedelta(days=k) for k in range(self.history_days, 0, -1)]

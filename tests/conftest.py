"""Shared fixtures. Airflow's environment is set before anything imports airflow."""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ZONE_START = date(2026, 1, 5)
ZONE_DAYS = 28


def pytest_configure(config: pytest.Config) -> None:
    af = Path(tempfile.mkdtemp(prefix="fraudseq-airflow-"))
    os.environ["AIRFLOW_HOME"] = str(af)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{af / 'airflow.db'}"
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    for key in [k for k in os.environ if k.startswith("FRAUDSEQ_")]:
        os.environ.pop(key)


@pytest.fixture(autouse=True)
def _isolated_environment() -> Iterator[None]:
    """Each test starts from the session's environment and leaves it as it found it.

    ``mlflow.set_tracking_uri`` exports ``MLFLOW_TRACKING_URI`` and the demo exports
    ``FRAUDSEQ_HOME``; without this a later test's ``Settings()`` would read an earlier
    test's stores (a retrain would register into someone else's registry).
    """
    saved = dict(os.environ)
    thresholds = gc.get_threshold()  # the CLI and the DAG tasks tune the collector (pipeline.heap)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    yield
    os.environ.clear()
    os.environ.update(saved)
    gc.set_threshold(*thresholds)


def use_home(monkeypatch: pytest.MonkeyPatch, home: Path, landing: Path | None = None) -> None:
    """Point FRAUDSEQ_* at ``home`` (and ``landing``) for one test."""
    monkeypatch.setenv("FRAUDSEQ_HOME", str(home))
    # mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI, which Settings would then
    # prefer over the new home's store: forget an earlier test's tracking store
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    if landing is not None:
        monkeypatch.setenv("FRAUDSEQ_LANDING", str(landing))


@pytest.fixture(scope="session")
def small_zone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated landing zone: 200 customers over 4 weeks."""
    from pipeline.generate import generate_landing

    out = tmp_path_factory.mktemp("zone") / "landing"
    generate_landing(out, customers=200, days=ZONE_DAYS, start=ZONE_START, seed=7)
    return out


@pytest.fixture(scope="session")
def validated_home(small_zone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``small_zone`` validated day by day into a FRAUDSEQ_HOME (read-only for tests: copy it)."""
    from pipeline.config import Settings
    from pipeline.validate import validate_day

    home = tmp_path_factory.mktemp("validated") / "home"
    settings = Settings(home=home, landing=small_zone)
    for k in range(ZONE_DAYS):
        validate_day(settings, ZONE_START + timedelta(days=k))
    return home


@pytest.fixture(scope="session")
def trained_home(validated_home: Path, small_zone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``validated_home`` plus a champion trained on its first three weeks (2 epochs)."""
    from pipeline.config import Settings
    from pipeline.train import TrainOptions, train_model

    home = tmp_path_factory.mktemp("trained") / "home"
    shutil.copytree(validated_home, home)
    settings = Settings(home=home, landing=small_zone)
    train_model(
        settings,
        ZONE_START,
        ZONE_START + timedelta(days=20),
        seed=0,
        options=TrainOptions(epochs=2),
        progress=False,
    )
    return home


@pytest.fixture
def home_copy(trained_home: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of ``trained_home`` (its MLflow artifacts stay shared and read-only)."""
    home = tmp_path / "home"
    shutil.copytree(trained_home, home)
    yield home

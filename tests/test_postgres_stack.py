"""The whole deployment on the real PostgreSQL server: Airflow metadata, MLflow store and scores.

- Airflow 3 with LocalExecutor on a PostgreSQL metadata DB (api-server, scheduler and
  dag-processor as real processes): a ``start``/``end`` run of ``fraudseq_validate`` maps
  one task per day, and the metadata DB shows those mapped tasks overlapping in time. The
  executor is ``pipeline.executors.LocalExecutor``: its workers have torch loaded, not Polars.
- MLflow tracking and registry on ``postgresql+psycopg://``: train a tiny model, register
  it, resolve ``champion``, and score with it into PostgreSQL scores tables.

Each test creates its own databases and drops them afterwards. A missing server skips,
except under ``CI=true`` where it fails (``tests/test_db.py: _server_missing``).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from .conftest import ZONE_START
from .test_db import PG_ADMIN, PG_HOST, _server_missing
from .test_idempotence import assert_same_validated, validated_state


@pytest.fixture
def fresh_database() -> Iterator[callable]:
    """A factory of new, empty PostgreSQL databases; each is dropped when the test ends."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(f"{PG_ADMIN} dbname=postgres", autocommit=True)
    except psycopg.OperationalError as exc:
        _server_missing(str(exc).strip().splitlines()[0])
    made: list[str] = []

    def make(purpose: str) -> str:
        name = f"fraudseq_{purpose}_{uuid.uuid4().hex[:10]}"
        admin.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return f"postgresql+psycopg://postgres@{PG_HOST}:5432/{name}"

    with admin:
        try:
            yield make
        finally:
            for name in made:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def overlapping_pairs(intervals: list[tuple]) -> int:
    """How many pairs of (start, end) intervals share some time."""
    return sum(1 for i, a in enumerate(intervals) for b in intervals[i + 1 :] if a[0] < b[1] and b[0] < a[1])


@pytest.mark.slow
def test_airflow_on_postgres_runs_mapped_days_in_parallel(
    fresh_database, validated_home: Path, small_zone: Path, tmp_path: Path
) -> None:
    from .airflow_services import AirflowServices

    metadata_url = fresh_database("airflow")
    home = tmp_path / "home"
    shutil.copytree(validated_home, home)
    days = [ZONE_START + timedelta(days=k) for k in range(14, 18)]
    expected = {d: validated_state(home, d) for d in days}
    for day in days:  # wipe the days so their output can only come from this run
        for root in ("validated", "quarantine"):
            for folder in home.glob(f"{root}/*/date={day}"):
                shutil.rmtree(folder)
        (home / "reports" / "validation" / f"date={day}.json").unlink()

    env = {"FRAUDSEQ_HOME": str(home), "FRAUDSEQ_LANDING": str(small_zone)}
    with AirflowServices(tmp_path / "airflow", metadata_url, env) as airflow:
        airflow.wait_for_dag("fraudseq_validate")
        airflow.airflow(
            "dags", "trigger", "fraudseq_validate", "--run-id", "range",
            "--conf", f'{{"start": "{days[0]}", "end": "{days[-1]}"}}',
        )  # fmt: skip
        airflow.airflow("dags", "unpause", "fraudseq_validate")
        runs = airflow.wait_for_runs("fraudseq_validate", 1, run_id_prefix="range")
        workers = airflow.executor_workers()
        assert workers, "no LocalExecutor worker process under the scheduler"
        for pid in workers:  # torch was imported before they forked, Polars never (it runs in tasks)
            maps = Path(f"/proc/{pid}/maps").read_text()
            assert "libtorch_cpu" in maps, f"LocalExecutor worker {pid} has no torch (pipeline.executors)"
            assert "polars" not in maps, f"LocalExecutor worker {pid} imported Polars"
    assert [r["state"] for r in runs] == ["success"]

    engine = sa.create_engine(metadata_url)
    try:
        with engine.connect() as conn:
            mapped = conn.execute(
                sa.text(
                    "SELECT map_index, state, start_date, end_date FROM task_instance "
                    "WHERE dag_id = 'fraudseq_validate' AND run_id = 'range' AND task_id = 'validate' "
                    "ORDER BY map_index"
                )
            ).fetchall()
            backend = conn.execute(sa.text("SELECT version()")).scalar_one()
    finally:
        engine.dispose()
    assert "PostgreSQL" in backend
    assert [r.map_index for r in mapped] == list(range(len(days)))
    assert {r.state for r in mapped} == {"success"}
    assert overlapping_pairs([(r.start_date, r.end_date) for r in mapped]) >= 1, mapped
    for day in days:
        assert_same_validated(expected[day], validated_state(home, day))


@pytest.mark.slow
def test_mlflow_registry_and_scores_on_postgres(fresh_database, home_copy: Path, small_zone: Path) -> None:
    from pipeline import db
    from pipeline.config import Settings
    from pipeline.registry import champion_version, resolve_version, use_tracking
    from pipeline.score import score_day
    from pipeline.train import TrainOptions, train_model

    tracking = fresh_database("mlflow")
    scores_url = fresh_database("scores")
    settings = Settings(
        home=home_copy, landing=small_zone, mlflow_tracking_uri=tracking, scores_url=scores_url
    )
    out = train_model(
        settings,
        ZONE_START,
        ZONE_START + timedelta(days=20),
        seed=0,
        options=TrainOptions(epochs=1),
        progress=False,
    )
    assert out["version"] == "1" and out["promoted"]
    use_tracking(tracking)
    assert champion_version(settings.model_name) == "1"
    assert resolve_version(None, settings.model_name) == (settings.model_name, "1")

    day = ZONE_START + timedelta(days=22)
    result = score_day(settings, day)
    engine = db.make_engine(scores_url)
    registry = sa.create_engine(tracking)
    try:
        rows = db.read_scores(engine, day, day)
        with registry.connect() as conn:
            n_versions = conn.execute(sa.text("SELECT COUNT(*) FROM model_versions")).scalar_one()
    finally:
        engine.dispose()
        registry.dispose()
    assert rows.height == result["n_transactions"] > 0
    assert set(rows["model_version"].to_list()) == {"1"}
    assert n_versions == 1

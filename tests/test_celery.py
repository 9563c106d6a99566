"""fraudseq on Airflow's CeleryExecutor, for real: deploy/start-celery.sh on this machine.

Starts the api-server, scheduler, dag-processor and two Celery workers (concurrency 1)
against the local Redis (its own database number, a unique queue) and fresh PostgreSQL
databases for the Airflow metadata, MLflow and the scores, runs fraudseq_score for one day
in 4 shards, and checks that both workers ran tasks, that each worker's main process had
imported torch (pipeline.worker_preload) and not Polars, and that the day is complete. The
validated days are published to FRAUDSEQ_SHARED_URL and the workers' FRAUDSEQ_HOME is an
empty folder, so every input reaches them through the shared location or a database.
A missing Redis or PostgreSQL skips, except under CI=true where it fails.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from .conftest import ROOT, ZONE_START

pytestmark = pytest.mark.slow

PG_HOST = os.environ.get("FRAUDSEQ_TEST_PG_HOST", "127.0.0.1")
REDIS_URL = os.environ.get("FRAUDSEQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")
DAY = ZONE_START + timedelta(days=22)
BIN = Path(sys.executable).parent


def _server_missing(what: str, reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} required under CI=true but unavailable: {reason}")
    pytest.skip(f"{what} unavailable: {reason}")


@pytest.fixture
def pg_databases() -> Iterator[dict[str, str]]:
    """Three fresh databases (Airflow metadata, MLflow, scores), dropped afterwards."""
    import psycopg

    tag = uuid.uuid4().hex[:10]
    names = {"airflow": f"fraudseq_af_{tag}", "mlflow": f"fraudseq_ml_{tag}", "scores": f"fraudseq_sc_{tag}"}
    try:
        admin = psycopg.connect(f"host={PG_HOST} port=5432 user=postgres dbname=postgres connect_timeout=3")
    except psycopg.OperationalError as exc:
        _server_missing("PostgreSQL", str(exc).strip().splitlines()[0])
    admin.autocommit = True
    with admin:
        for name in names.values():
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield {k: f"postgresql+psycopg://postgres@{PG_HOST}:5432/{v}" for k, v in names.items()}
        finally:
            for name in names.values():
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.exceptions.RedisError as exc:
        _server_missing("Redis", str(exc))
    return REDIS_URL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _airflow(env: dict[str, str], *args: str) -> str:
    """An airflow CLI command with the recipe's environment (deploy/celery.env)."""
    shell = f'source "{ROOT}/deploy/celery.env" && exec "$AIRFLOW_BIN" "$@"'
    done = subprocess.run(
        ["bash", "-c", shell, "airflow", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"airflow {' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout


def _query(url: str, sql: str, **params: object) -> list[tuple]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params).all()]
    finally:
        engine.dispose()


def test_score_dag_runs_on_two_celery_workers(
    home_copy, small_zone, pg_databases, redis_url, tmp_path
) -> None:
    from pipeline import db
    from pipeline.config import Settings
    from pipeline.train import TrainOptions, train_model
    from pipeline.validate import publish_day, read_validated, validated_days

    # the validating machine: a champion in MLflow on PostgreSQL, every validated day published
    shared = tmp_path / "shared"
    validating = Settings(home=home_copy, landing=small_zone, mlflow_tracking_uri=pg_databases["mlflow"])
    train_model(
        validating,
        ZONE_START,
        ZONE_START + timedelta(days=20),
        seed=0,
        options=TrainOptions(epochs=1),
        progress=False,
    )
    for day in validated_days(validating):
        publish_day(validating.model_copy(update={"shared_url": shared.as_uri()}), day)
    worker_home = tmp_path / "worker-home"  # the workers' own FRAUDSEQ_HOME: empty

    tag = uuid.uuid4().hex[:8]
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FRAUDSEQ_", "MLFLOW_"))}
    env.update(
        PATH=f"{BIN}:{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),
        AIRFLOW_BIN=str(BIN / "airflow"),
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        AIRFLOW_API_PORT=str(_free_port()),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=pg_databases["airflow"],
        AIRFLOW__CELERY__BROKER_URL=redis_url,
        AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",  # only our triggered run
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        FRAUDSEQ_DEPLOY_RUN_DIR=str(run_dir),
        FRAUDSEQ_CELERY_QUEUE=f"fraudseq_test_{tag}",
        FRAUDSEQ_WORKER_PREFIX=f"w{tag}-",
        FRAUDSEQ_HOME=str(worker_home),
        FRAUDSEQ_SHARDS="4",
        FRAUDSEQ_SHARED_URL=shared.as_uri(),
        FRAUDSEQ_SCORES_URL=pg_databases["scores"],
        FRAUDSEQ_ALERT_BUDGET="12",
        MLFLOW_TRACKING_URI=pg_databases["mlflow"],
    )
    script = str(ROOT / "deploy" / "start-celery.sh")
    started = subprocess.run(["bash", script, "start"], env=env, capture_output=True, text=True, timeout=420)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        af = pg_databases["airflow"]
        deadline = time.monotonic() + 240
        while not _query(af, "SELECT 1 FROM dag WHERE dag_id = 'fraudseq_score'"):
            assert time.monotonic() < deadline, "the dag-processor never parsed fraudseq_score"
            time.sleep(3)
        _airflow(env, "dags", "unpause", "fraudseq_score")
        conf = json.dumps({"date": DAY.isoformat()})
        _airflow(env, "dags", "trigger", "fraudseq_score", "--run-id", f"celery_{tag}", "--conf", conf)

        deadline = time.monotonic() + 600
        state = None
        while state not in ("success", "failed"):
            assert time.monotonic() < deadline, f"run still {state} after 600 s (logs in {run_dir})"
            time.sleep(5)
            rows = _query(af, "SELECT state FROM dag_run WHERE run_id = :r", r=f"celery_{tag}")
            state = rows[0][0] if rows else None
        tis = _query(
            af,
            "SELECT task_id, map_index, state, hostname FROM task_instance WHERE run_id = :r",
            r=f"celery_{tag}",
        )
        assert state == "success", (tis, sorted(p.name for p in run_dir.iterdir()))
        for i in (1, 2):  # each worker imported torch before it forked tasks, and no Polars after them
            maps = Path(f"/proc/{(run_dir / f'worker{i}.pid').read_text().strip()}/maps").read_text()
            assert "libtorch_cpu" in maps, f"worker{i} did not preload torch (pipeline.worker_preload)"
            assert "polars" not in maps, f"worker{i}'s main process imported Polars"
    finally:
        subprocess.run(["bash", script, "stop"], env=env, capture_output=True, timeout=120, check=False)

    # announce_drift is skipped unless the day drifted (then it emits fraudseq_drift)
    assert all(s == "success" or (t == "announce_drift" and s == "skipped") for t, _, s, _ in tis), tis
    assert sorted(m for t, m, _, _ in tis if t == "score_shard") == [0, 1, 2, 3]
    assert [t for t, _, _, _ in tis].count("finalise") == 1
    hosts = {h for _, _, _, h in tis}
    assert hosts == {f"w{tag}-1", f"w{tag}-2"}, tis  # both workers ran tasks, and only they did

    engine = db.make_engine(pg_databases["scores"])
    try:
        scores = db.read_scores(engine, DAY, DAY)
    finally:
        engine.dispose()
    kept = read_validated(validating, "transactions", [DAY]).collect()
    assert sorted(scores["event_id"].to_list()) == sorted(kept["event_id"].to_list())
    assert sorted(scores["risk_rank"].to_list()) == list(range(1, scores.height + 1))
    assert int(scores["alert"].sum()) == 12
    # the shards wrote to the shared folder (the workers' homes hold none), and finalise removed them
    assert (shared / "scores").is_dir() and list(shared.rglob("shard-*.parquet")) == []
    assert not list(worker_home.rglob("shard-*.parquet"))
    assert not (worker_home / "validated").exists()  # the workers read validated days from `shared`

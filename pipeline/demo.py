"""``fraudseq demo``: generate, validate, train and score through the real DAGs, then report.

Everything runs on the embedded defaults: SQLite for the Airflow and MLflow metadata and
DuckDB for the scores, all under ``$FRAUDSEQ_HOME``. No server is started.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.config import Settings
from pipeline.errors import FraudseqError

log = logging.getLogger(__name__)

DAGS_FOLDER = Path(__file__).resolve().parents[1] / "dags"
DEMO_START = date(2026, 1, 5)


def airflow_env(settings: Settings) -> dict[str, str]:
    """Environment for an embedded Airflow: SQLite metadata under FRAUDSEQ_HOME, our DAG folder."""
    home = settings.airflow_home
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }


def prepare_airflow(settings: Settings) -> None:
    """Point this process at the embedded Airflow and migrate its metadata DB (idempotent).

    If airflow is already imported (a test session), its configuration is kept: the
    environment it was imported with decides which metadata DB gets migrated.
    """
    if "airflow" not in sys.modules:
        settings.airflow_home.mkdir(parents=True, exist_ok=True)
        os.environ.update(airflow_env(settings))
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=dict(os.environ),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def run_dag(dag_id: str, conf: dict[str, Any]) -> None:
    """Run one DAG in-process with ``dag.test`` and fail loudly if any task failed."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER / f"{dag_id}.py"))
    if bag.import_errors:
        raise FraudseqError(f"{dag_id}: import error {next(iter(bag.import_errors.values()))}")
    run = bag.dags[dag_id].test(run_conf=conf)
    state = str(getattr(run, "state", "")).lower()
    if "success" not in state:
        raise FraudseqError(f"{dag_id} run {conf} ended {state}: see {os.environ.get('AIRFLOW_HOME')}/logs")


def truth_ap(settings: Settings, truth_path: Path, start: date, end: date) -> dict[str, Any]:
    """AP and alert precision of the stored scores of [start, end] against the generator's truth."""
    from pipeline import db
    from pipeline.metrics import average_precision

    engine = db.make_engine(settings.scores_db_url)
    try:
        scores = db.read_scores(engine, start, end)
    finally:
        engine.dispose()
    truth = pl.read_parquet(truth_path).select("event_id", pl.col("is_fraud").cast(pl.Int8))
    df = scores.join(truth, on="event_id", how="left").with_columns(pl.col("is_fraud").fill_null(0))
    y, s = df["is_fraud"].to_numpy(), df["risk_score"].to_numpy()
    alerts = df.filter(pl.col("alert"))
    return {
        "n_transactions": df.height,
        "n_fraud": int(y.sum()),
        "average_precision": average_precision(y, s) if 0 < y.sum() < len(y) else None,
        "fraud_rate": float(y.mean()) if len(y) else None,
        "alert_precision": float(alerts["is_fraud"].mean()) if alerts.height else None,  # type: ignore[arg-type]
    }


def run_demo(settings: Settings, customers: int = 300, days: int = 35, seed: int = 0) -> dict[str, Any]:
    """The whole job on a fresh synthetic landing zone; returns a summary for humans and JSON."""
    from pipeline.db import redact_url
    from pipeline.generate import generate_landing

    t0 = time.perf_counter()
    home = settings.home_dir
    landing = settings.landing.expanduser().resolve() if settings.landing else home / "landing"
    os.environ["FRAUDSEQ_HOME"] = str(home)
    os.environ["FRAUDSEQ_LANDING"] = str(landing)
    last = DEMO_START + timedelta(days=days - 1)
    score_start = last - timedelta(days=6)
    train_end = score_start - timedelta(days=1)

    gen = generate_landing(landing, customers, days, DEMO_START, seed)
    log.info("generated %d transactions and %d logins in %.1fs", gen.n_transactions, gen.n_logins, gen.wall_s)
    prepare_airflow(settings)
    run_dag("fraudseq_validate", {"start": DEMO_START.isoformat(), "end": last.isoformat()})
    run_dag(
        "fraudseq_train",
        {"train_start": DEMO_START.isoformat(), "train_end": train_end.isoformat(), "seed": seed},
    )
    run_dag("fraudseq_score", {"start": score_start.isoformat(), "end": last.isoformat()})
    quality = truth_ap(settings, gen.truth_path, score_start, last)
    wall = time.perf_counter() - t0

    ap = quality["average_precision"]
    summary = "\n".join(
        [
            f"fraudseq demo finished in {wall:.0f}s",
            f"  scored {score_start}..{last}: {quality['n_transactions']} transactions, {quality['n_fraud']} frauds",
            f"  average precision on that week: {ap:.3f} (fraud rate {quality['fraud_rate']:.4f})"
            if ap is not None
            else "  AP: n/a",
            "",
            f"Scores: {redact_url(settings.scores_db_url)}",
            f'  duckdb {home / "scores.duckdb"} "SELECT score_date, risk_rank, customer_id, risk_score, reasons '
            'FROM current_scores WHERE alert ORDER BY score_date DESC, risk_rank LIMIT 10"',
            f"  (or: .venv/bin/python -c \"import duckdb; print(duckdb.connect('{home / 'scores.duckdb'}', read_only=True)"
            ".sql('SELECT * FROM current_scores WHERE alert ORDER BY score_date DESC, risk_rank LIMIT 10'))\")",
            f"Daily reports: {settings.reports_dir}/<day>.html (latest: {settings.reports_dir / f'{last}.html'})",
            f"MLflow UI: .venv/bin/mlflow ui --backend-store-uri {redact_url(settings.tracking_uri)}",
            f"Airflow UI: AIRFLOW_HOME={settings.airflow_home} AIRFLOW__CORE__DAGS_FOLDER={DAGS_FOLDER} .venv/bin/airflow standalone",
        ]
    )
    return {
        "summary": summary,
        "wall_s": round(wall, 1),
        "landing": str(landing),
        "scored": {"start": score_start.isoformat(), "end": last.isoformat()},
        "quality": quality,
        "scores_url": settings.scores_db_url,
    }

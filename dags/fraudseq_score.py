"""
### fraudseq_score

Scores one validated day with the `champion` model and replaces that day's rows in the
scores database (`transaction_scores`, `customer_daily_risk`, `fraud_labels`).

- Runs after validation (02:00 UTC, an hour after `fraudseq_validate`; a day that is not
  validated yet fails the task, which retries).
- The champion is resolved to a version number once, at the start of the run.
- Day: the `date` param, else the UTC day before the logical date; `start`/`end` map a range.
- Each day gets `$FRAUDSEQ_HOME/reports/<day>.html` (also in MLflow, `fraudseq-reports`).
- PSI above `FRAUDSEQ_DRIFT_THRESHOLD` logs a warning and emits the `fraudseq_drift` asset,
  which triggers `fraudseq_train`.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

DRIFT = Asset(name="fraudseq_drift", uri="file:///fraudseq/drift")


@dag(
    dag_id="fraudseq_score",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 3, "retry_delay": pendulum.duration(minutes=10)},
    params={
        "date": Param(None, type=["null", "string"], format="date", description="Day to score (YYYY-MM-DD)."),
        "start": Param(None, type=["null", "string"], format="date", description="First day of a range."),
        "end": Param(None, type=["null", "string"], format="date", description="Last day of a range."),
        "model_uri": Param(
            None, type=["null", "string"], description="models:/NAME@ALIAS or models:/NAME/VERSION."
        ),
    },
    tags=["fraudseq"],
    doc_md=__doc__,
)
def fraudseq_score() -> None:
    @task
    def days() -> list[str]:
        from pipeline.runs import days_for_run

        ctx = get_current_context()
        return days_for_run(ctx["params"], ctx.get("logical_date"))

    @task
    def pin_model() -> list[str]:
        from pipeline.config import Settings
        from pipeline.registry import resolve_version, use_tracking

        settings = Settings()
        use_tracking(settings.tracking_uri)
        return list(resolve_version(get_current_context()["params"].get("model_uri"), settings.model_name))

    # DuckDB takes one writer at a time; raise FRAUDSEQ_SCORE_PARALLELISM on PostgreSQL.
    @task(max_active_tis_per_dagrun=int(os.environ.get("FRAUDSEQ_SCORE_PARALLELISM", "1")))
    def score(day: str, pinned: list[str]) -> dict:
        from datetime import date

        from pipeline.config import Settings
        from pipeline.score import score_day

        return score_day(Settings(), date.fromisoformat(day), pinned=(pinned[0], pinned[1]))

    @task(outlets=[DRIFT])
    def announce_drift(results: list[dict]) -> list[str]:
        from airflow.sdk.exceptions import AirflowSkipException

        drifted = [r["date"] for r in results if r.get("drifted")]
        if not drifted:
            raise AirflowSkipException("no PSI above the drift threshold")
        return drifted

    announce_drift(score.partial(pinned=pin_model()).expand(day=days()))


fraudseq_score()

"""
### fraudseq_validate

Validates one day of every landing log (transactions, logins, labels) with Great
Expectations. Bad rows go to quarantine with a reason; a file defect fails the day and
leaves its earlier output as it was.

- Day: the `date` param, else the UTC day before the run's logical date.
- Backfill in one run: give `start` and `end`; the days are mapped in parallel.
- Emits the `fraudseq_labels` asset when labels landed, which can trigger training.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

VALIDATED = Asset(name="fraudseq_validated", uri="file:///fraudseq/validated")
LABELS = Asset(name="fraudseq_labels", uri="file:///fraudseq/labels")


@dag(
    dag_id="fraudseq_validate",
    schedule="0 1 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=5)},
    params={
        "date": Param(
            None, type=["null", "string"], format="date", description="Day to validate (YYYY-MM-DD)."
        ),
        "start": Param(None, type=["null", "string"], format="date", description="First day of a range."),
        "end": Param(None, type=["null", "string"], format="date", description="Last day of a range."),
    },
    tags=["fraudseq"],
    doc_md=__doc__,
)
def fraudseq_validate() -> None:
    @task
    def days() -> list[str]:
        from pipeline.runs import days_for_run

        ctx = get_current_context()
        return days_for_run(ctx["params"], ctx.get("logical_date"))

    @task(outlets=[VALIDATED])
    def validate(day: str) -> dict:
        from datetime import date

        from pipeline.config import Settings
        from pipeline.heap import tune_collector
        from pipeline.validate import validate_day

        tune_collector()
        report = validate_day(Settings(), date.fromisoformat(day))
        return {"date": day, "rows_in": {k: v["rows_in"] for k, v in report["logs"].items()}}

    @task(outlets=[LABELS])
    def announce_labels(results: list[dict]) -> int:
        from airflow.sdk.exceptions import AirflowSkipException

        # index within len(): iterating a lazy XCom sequence probes one past its end (a logged 404)
        n = sum(results[i]["rows_in"].get("labels", 0) for i in range(len(results)))
        if n == 0:
            raise AirflowSkipException("no labels landed")
        return n

    announce_labels(validate.expand(day=days()))


fraudseq_validate()

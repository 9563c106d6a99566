"""
### fraudseq_train

Trains a new model version on the last `FRAUDSEQ_TRAIN_DAYS` validated days (or the
`train_start`/`train_end` params), logs it to MLflow, registers it and applies the gate:
`champion` moves only if the new version beats it on the same validation window.

Runs weekly (Mondays 04:00 UTC), whenever `fraudseq_validate` reports new labels, and
whenever `fraudseq_score` reports drift (`fraudseq_drift`). The gate still decides.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import (
    Asset,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    dag,
    get_current_context,
    task,
)

LABELS = Asset(name="fraudseq_labels", uri="file:///fraudseq/labels")
DRIFT = Asset(name="fraudseq_drift", uri="file:///fraudseq/drift")


@dag(
    dag_id="fraudseq_train",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 4 * * 1", timezone="UTC"), assets=(LABELS | DRIFT)
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": pendulum.duration(minutes=15)},
    params={
        "train_start": Param(None, type=["null", "string"], format="date", description="First training day."),
        "train_end": Param(None, type=["null", "string"], format="date", description="Last training day."),
        "seed": Param(0, type="integer", description="Training seed."),
    },
    tags=["fraudseq"],
    doc_md=__doc__,
)
def fraudseq_train() -> None:
    @task
    def train() -> dict:
        from pipeline.config import Settings
        from pipeline.heap import tune_collector
        from pipeline.runs import training_range
        from pipeline.train import train_model

        tune_collector()
        ctx = get_current_context()
        settings = Settings()
        start, end = training_range(ctx["params"], ctx.get("logical_date"), settings.train_days)
        result = train_model(settings, start, end, seed=int(ctx["params"].get("seed") or 0), progress=False)
        return {k: result[k] for k in ("model_name", "version", "promoted", "reason", "run_id")}

    train()


fraudseq_train()

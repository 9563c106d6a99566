"""
### fraudseq_score

Scores one validated day with the `champion` model and replaces that day's rows in the
scores database (`transaction_scores`, `customer_daily_risk`, `fraud_labels`).

- Runs after validation (02:00 UTC, an hour after `fraudseq_validate`; a day that is not
  validated yet fails the task, which retries).
- The champion is resolved to a version number once, at the start of the run, and that
  version's bundle is copied from the registry to `FRAUDSEQ_SHARED_URL` (`models/`); the shard
  and finalise tasks load that copy, checked against its digests, without importing MLflow.
- Day: the `date` param, else the UTC day before the logical date; `start`/`end` map a range.
- Each day is split into `FRAUDSEQ_SHARDS` (or the `shards` param) customer shards, ranges
  of xxhash64 of `customer_id`; each shard reads only its range of the validated days (they are
  stored sorted by that hash). (day, shard) pairs are mapped with `.expand` and may run on
  different workers. Shards write logits to `FRAUDSEQ_SHARED_URL`; one `finalise` per day
  ranks and alerts over all shards and commits the day in one transaction. XCom carries
  only paths and counts.
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
        "shards": Param(
            None, type=["null", "integer"], minimum=1, description="Shards per day (default FRAUDSEQ_SHARDS)."
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
        """[name, version, URL of the version's bundle staged for the workers]."""
        from pipeline.config import Settings
        from pipeline.registry import resolve_version, stage_bundle, use_tracking

        settings = Settings()
        use_tracking(settings.tracking_uri)
        name, version = resolve_version(get_current_context()["params"].get("model_uri"), settings.model_name)
        return [name, version, stage_bundle(settings, name, version)]

    @task
    def shards() -> list[int]:
        from pipeline.config import Settings

        n = get_current_context()["params"].get("shards") or Settings().shards
        return list(range(int(n)))

    @task
    def score_shard(day: str, shard: int, pinned: list[str], n_shards: list[int]) -> dict:
        from datetime import date

        from pipeline.config import Settings
        from pipeline.heap import tune_collector
        from pipeline.registry import load_staged
        from pipeline.shards import score_shard

        tune_collector()
        pin = (pinned[0], pinned[1])
        bundle = load_staged(pinned[2], pin) if len(pinned) > 2 else None  # None: from the registry
        return score_shard(Settings(), date.fromisoformat(day), shard, len(n_shards), pin, bundle=bundle)

    # DuckDB takes one writer at a time; raise FRAUDSEQ_SCORE_PARALLELISM on PostgreSQL.
    @task(max_active_tis_per_dagrun=int(os.environ.get("FRAUDSEQ_SCORE_PARALLELISM", "1")))
    def finalise(day: str, pinned: list[str], n_shards: list[int], outputs: list[dict]) -> dict:
        from datetime import date

        from pipeline.config import Settings
        from pipeline.heap import tune_collector
        from pipeline.registry import load_staged
        from pipeline.shards import finalise_day

        tune_collector()
        pin = (pinned[0], pinned[1])
        bundle = load_staged(pinned[2], pin) if len(pinned) > 2 else None
        # index within len(): iterating a lazy XCom sequence probes one past its end (a logged 404)
        paths = [o["path"] for o in (outputs[i] for i in range(len(outputs))) if o["date"] == day]
        return finalise_day(Settings(), date.fromisoformat(day), pin, len(n_shards), paths, bundle=bundle)

    pinned = pin_model()
    day_list = days()
    shard_list = shards()
    outputs = score_shard.partial(pinned=pinned, n_shards=shard_list).expand(day=day_list, shard=shard_list)
    finalised = finalise.partial(pinned=pinned, n_shards=shard_list, outputs=outputs).expand(day=day_list)

    @task(outlets=[DRIFT])
    def announce_drift(results: list[dict]) -> list[str]:
        from airflow.sdk.exceptions import AirflowSkipException

        drifted = [r["date"] for r in (results[i] for i in range(len(results))) if r.get("drifted")]
        if not drifted:
            raise AirflowSkipException("no PSI above the drift threshold")
        return drifted

    announce_drift(finalised)


fraudseq_score()

"""What a scheduled run works on: its days and its pinned model. Airflow-free, so DAGs stay thin."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

from pipeline.errors import UsageError
from pipeline.sequences import day_range

MAX_RANGE_DAYS = 366


def _as_day(value: Any, name: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise UsageError(f"param {name}={value!r}: expected YYYY-MM-DD") from exc


def days_for_run(params: dict[str, Any], logical_date: datetime | None) -> list[str]:
    """The days a daily run processes (contract section 7), as ISO strings.

    ``date`` wins; else ``start``/``end`` give a range (a backfill in one run); else the
    UTC day before the run's logical date.
    """
    if params.get("date"):
        return [_as_day(params["date"], "date").isoformat()]
    if params.get("start") or params.get("end"):
        start = _as_day(params.get("start") or params.get("end"), "start")
        end = _as_day(params.get("end") or params.get("start"), "end")
        if end < start or (end - start).days >= MAX_RANGE_DAYS:
            raise UsageError(
                f"params start={start} end={end}: need start <= end within {MAX_RANGE_DAYS} days"
            )
        return [d.isoformat() for d in day_range(start, end)]
    when = (logical_date or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return [(when.date() - timedelta(days=1)).isoformat()]


def training_range(
    params: dict[str, Any], logical_date: datetime | None, train_days: int
) -> tuple[date, date]:
    """(start, end) for a training run: params ``train_start``/``train_end``, else the last ``train_days`` days."""
    if params.get("train_end"):
        end = _as_day(params["train_end"], "train_end")
    else:
        end = (logical_date or datetime.now(timezone.utc)).astimezone(timezone.utc).date() - timedelta(days=1)
    start = (
        _as_day(params["train_start"], "train_start")
        if params.get("train_start")
        else end - timedelta(days=train_days - 1)
    )
    if end < start:
        raise UsageError(f"params train_start={start} train_end={end}: start must not be after end")
    return start, end

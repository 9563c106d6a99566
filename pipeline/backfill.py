"""Validate and score a range of days in order. Each day is replaced whole, so a re-run is safe."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from pipeline.config import Settings
from pipeline.errors import FileDefectError
from pipeline.sequences import day_range

log = logging.getLogger(__name__)


def backfill_range(
    settings: Settings, start: date, end: date, model_uri: str | None = None
) -> dict[str, Any]:
    """Validate then score every day of [start, end] with one pinned model version.

    A day that fails validation is reported and not scored; later days still run (their
    history simply lacks that day, which is a warning). The command fails at the end if
    any day failed.
    """
    from rich.console import Console
    from rich.progress import Progress

    from pipeline.registry import resolve_version, use_tracking
    from pipeline.score import score_day
    from pipeline.validate import validate_day

    use_tracking(settings.tracking_uri)
    pinned = resolve_version(model_uri, settings.model_name)
    days: list[dict[str, Any]] = []
    failed: list[str] = []
    with Progress(console=Console(stderr=True), transient=True) as progress:  # stdout stays JSON
        task = progress.add_task("backfill", total=(end - start).days + 1)
        for day in day_range(start, end):
            try:
                report = validate_day(settings, day)
            except FileDefectError as exc:
                log.error("%s", exc)
                days.append({"date": day.isoformat(), "validation": "failed", "scored": 0, "error": str(exc)})
                failed.append(day.isoformat())
                progress.advance(task)
                continue
            result = score_day(settings, day, pinned=pinned)
            days.append(
                {"date": day.isoformat(), "validation": report["status"], "scored": result["n_transactions"]}
            )
            progress.advance(task)
    out = {"model_name": pinned[0], "model_version": pinned[1], "days": days, "failed_days": failed}
    if failed:
        err = FileDefectError(f"backfill: {len(failed)} day(s) failed validation, first {failed[0]}")
        err.report = out  # type: ignore[attr-defined]
        raise err
    return out

"""What an operator wants to know first: champion, last days processed, alerts."""

from __future__ import annotations

from typing import Any

from pipeline.config import Settings


def pipeline_status(settings: Settings) -> dict[str, Any]:
    """Champion version, last validated and scored days, and the latest day's alert count."""
    import sqlalchemy as sa

    from pipeline import db
    from pipeline.registry import champion_version, use_tracking
    from pipeline.validate import validated_days

    use_tracking(settings.tracking_uri)
    validated = validated_days(settings, "transactions")
    out: dict[str, Any] = {
        "model_name": settings.model_name,
        "champion_version": champion_version(settings.model_name),
        "last_validated_day": validated[-1].isoformat() if validated else None,
        "last_scored_day": None,
        "latest_alerts": None,
        "scores_db": db.redact_url(settings.scores_db_url),
    }
    engine = db.make_engine(settings.scores_db_url)
    try:
        db.init_schema(engine)
        with engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT score_date, SUM(CASE WHEN alert THEN 1 ELSE 0 END) FROM current_scores "
                    "GROUP BY score_date ORDER BY score_date DESC LIMIT 1"
                )
            ).first()
    finally:
        engine.dispose()
    if row is not None:
        out["last_scored_day"] = str(row[0])
        out["latest_alerts"] = int(row[1])
    return out

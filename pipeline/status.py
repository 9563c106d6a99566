"""What an operator wants to know first: champion, last days processed, alerts, drift."""

from __future__ import annotations

from typing import Any

from pipeline.config import Settings


def pipeline_status(settings: Settings) -> dict[str, Any]:
    """Champion version, last validated and scored days, the latest day's alert count and drift."""
    import sqlalchemy as sa

    from pipeline import db
    from pipeline.drift import latest_drift
    from pipeline.registry import champion_version, use_tracking
    from pipeline.validate import validated_days

    use_tracking(settings.tracking_uri)
    validated = validated_days(settings, "transactions")
    champion = champion_version(settings.model_name)
    out: dict[str, Any] = {
        "model_name": settings.model_name,
        "champion_version": champion,
        "champion_train_window": _champion_tag(settings.model_name, champion, "train_window"),
        "last_validated_day": validated[-1].isoformat() if validated else None,
        "last_scored_day": None,
        "latest_alerts": None,
        "latest_transactions": None,
        "latest_report": None,
        "drift": None,
        "scores_db": db.redact_url(settings.scores_db_url),
    }
    engine = db.make_engine(settings.scores_db_url)
    try:
        db.init_schema(engine)
        with engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT score_date, SUM(CASE WHEN alert THEN 1 ELSE 0 END), COUNT(*) FROM current_scores "
                    "GROUP BY score_date ORDER BY score_date DESC LIMIT 1"
                )
            ).first()
    finally:
        engine.dispose()
    if row is not None:
        out["last_scored_day"] = str(row[0])
        out["latest_alerts"] = int(row[1])
        out["latest_transactions"] = int(row[2])
        page = settings.reports_dir / f"{row[0]}.html"
        out["latest_report"] = str(page) if page.is_file() else None
    record = latest_drift(settings.reports_dir)
    if record is not None:
        out["drift"] = {
            k: record[k] for k in ("date", "threshold", "score_psi", "max_psi", "max_psi_column", "drifted")
        }
    return out


def _champion_tag(name: str, version: str | None, key: str) -> str | None:
    from mlflow import MlflowClient

    if version is None:
        return None
    return MlflowClient().get_model_version(name, version).tags.get(key)


def format_status(status: dict[str, Any]) -> str:
    """The human form of ``pipeline_status``: one line per fact, drift spelled out."""
    champion = (
        f"{status['model_name']} v{status['champion_version']} (trained on {status['champion_train_window']})"
        if status["champion_version"]
        else f"{status['model_name']}: no champion yet (run fraudseq train)"
    )
    drift = status["drift"]
    if drift is None:
        drift_line = "not computed yet"
    elif drift["drifted"]:
        drift_line = (
            f"WARNING on {drift['date']}: PSI above {drift['threshold']} for {', '.join(drift['drifted'])}"
        )
    else:
        drift_line = f"ok on {drift['date']} (worst PSI {drift['max_psi']:.3f} {drift['max_psi_column']})"
    scored = status["last_scored_day"] or "none"
    if status["last_scored_day"]:
        scored += f" ({status['latest_transactions']} transactions, {status['latest_alerts']} alerts)"
    return "\n".join(
        [
            f"champion:       {champion}",
            f"last validated: {status['last_validated_day'] or 'none'}",
            f"last scored:    {scored}",
            f"drift:          {drift_line}",
            f"report:         {status['latest_report'] or 'none'}",
            f"scores db:      {status['scores_db']}",
        ]
    )

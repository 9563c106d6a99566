"""The daily report: numbers on the page (rendered in headless Chromium), MLflow run, screenshot."""

from __future__ import annotations

import re
from datetime import date, timedelta
from html.parser import HTMLParser

import polars as pl
import pytest

from pipeline.report import matured_quality

from .browser import SCREENSHOTS, dump_dom, screenshot
from .conftest import ZONE_START, use_home
from .test_db import db_url, pg_url  # noqa: F401  (fixtures: both backends)

DAY = ZONE_START + timedelta(days=24)


def test_precision_and_recall_only_on_matured_days() -> None:
    daily = pl.DataFrame(
        {
            "score_date": [date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 9)],
            "n_transactions": [100, 120, 90],
            "n_alerts": [10, 0, 10],
            "n_fraud": [4, 0, 3],
            "n_fraud_alerts": [3, 0, 2],
        }
    )
    q = matured_quality(daily, date(2026, 1, 9), label_delay_days=7)
    assert q["score_date"].to_list() == [date(2026, 1, 1), date(2026, 1, 2)]
    assert q["precision"].to_list() == [pytest.approx(0.3), None]
    assert q["recall"].to_list() == [pytest.approx(0.75), None]


class _Text(HTMLParser):
    """Text of elements by id, and every img src (the DOM as Chromium rendered it)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.images: list[str] = []
        self._open: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src") or "")
        if a.get("id"):
            self._open.append(a["id"] or "")
            self.by_id[a["id"] or ""] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("b", "table", "p") and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for key in self._open:
            self.by_id[key] += " " + data


def _day_with_most_frauds(settings, labels: pl.DataFrame, offsets: range) -> date:
    from pipeline.validate import read_validated

    days = [ZONE_START + timedelta(days=k) for k in offsets]
    tx = read_validated(settings, "transactions", days).collect()
    frauds = tx.join(labels.filter(pl.col("is_fraud") == 1), on="event_id")
    counts = (
        frauds.group_by(pl.col("event_time").dt.date().alias("d")).len().sort("len", "d", descending=True)
    )
    assert counts.height, "the zone has frauds on these days"
    return counts["d"][0]


def test_alert_timelines_read_by_hash_equal_the_read_by_id(validated_home, monkeypatch) -> None:
    """Hashed days are read by the stored hash first; the timelines are the same as by id."""
    import pipeline.validate
    from pipeline.config import Settings
    from pipeline.report import TIMELINE_EVENTS, alert_timelines
    from pipeline.validate import hashed_days, read_validated

    use_home(monkeypatch, validated_home)
    settings = Settings()
    days = [DAY - timedelta(days=k) for k in range(8)]
    assert hashed_days(settings, days)
    tx = read_validated(settings, "transactions", [DAY]).collect().sort("event_id")
    alerted = tx.group_by("customer_id", maintain_order=True).first().head(5)
    alerts = alerted.select("event_id", "customer_id", pl.lit("[]").alias("reasons"))

    by_hash = alert_timelines(settings, DAY, alerts)
    monkeypatch.setattr(pipeline.validate, "hashed_days", lambda *a, **k: False)
    by_id = alert_timelines(settings, DAY, alerts)

    assert by_hash == by_id
    assert set(by_hash) == set(alerts["event_id"])
    for event_id, customer in alerts.select("event_id", "customer_id").iter_rows():
        rows = by_hash[event_id]
        assert 1 <= len(rows) <= TIMELINE_EVENTS
        assert {r["customer_id"] for r in rows} == {customer}
        assert rows[-1]["event_id"] == event_id and rows[-1]["is_alert"]
        assert not any(r["is_alert"] for r in rows[:-1])


def test_alert_timelines_from_the_reasons_events_equal_the_read_ones(validated_home, monkeypatch) -> None:
    """finalise_day hands the report the events it loaded for the reasons (30 days, every column
    of the event table): the timelines cut from them equal the ones read from the validated days."""
    import pipeline.report
    from pipeline.config import Settings
    from pipeline.report import TIMELINE_EVENTS, alert_timelines
    from pipeline.sequences import check_days, load_events
    from pipeline.validate import read_validated

    use_home(monkeypatch, validated_home)
    settings = Settings()
    tx = read_validated(settings, "transactions", [DAY]).collect().sort("event_id")
    history = check_days(settings, [DAY], settings.history_range(DAY))
    # the customers with the fewest events in the timelines' days: there a timeline is shorter
    # than TIMELINE_EVENTS, and events older than those days must stay out of it
    recent = load_events(settings, history[-7:], customers=tx["customer_id"].unique().to_list()).events
    fewest = recent.group_by("customer_id").len().sort("len", "customer_id").head(8)["customer_id"]
    alerted = tx.filter(pl.col("customer_id").is_in(fewest.implode())).group_by("customer_id").last()
    alerts = alerted.sort("customer_id").select("event_id", "customer_id", pl.lit("[]").alias("reasons"))
    customers = alerts["customer_id"].to_list()
    data = load_events(settings, history, customers=customers)
    # the loaded events reach further back than the timelines, and hold a customer not alerted
    other = tx.filter(~pl.col("customer_id").is_in(customers))["customer_id"][0]
    events = pl.concat([data.events, load_events(settings, [DAY], customers=[other]).events])

    read = alert_timelines(settings, DAY, alerts)
    monkeypatch.setattr(pipeline.report, "_timeline_events", lambda *a: pytest.fail("read again"))
    given = alert_timelines(settings, DAY, alerts, events)
    assert given == read
    assert sum(len(rows) for rows in read.values()) > len(alerts)  # more than the alerts themselves
    assert any(len(rows) < TIMELINE_EVENTS for rows in read.values())
    assert any(r["source"] == 0 for rows in read.values() for r in rows)  # logins too


@pytest.mark.slow
def test_report_shows_the_days_numbers_in_chromium(home_copy, small_zone, monkeypatch) -> None:
    from mlflow import MlflowClient
    from pipeline import db
    from pipeline.config import Settings
    from pipeline.registry import use_tracking
    from pipeline.report import REPORTS_EXPERIMENT
    from pipeline.score import score_day
    from pipeline.sequences import read_labels

    use_home(monkeypatch, home_copy, small_zone)
    monkeypatch.setenv("FRAUDSEQ_ALERT_BUDGET", "15")
    settings = Settings()
    labels = read_labels(settings, None)
    matured = _day_with_most_frauds(settings, labels, range(13, 17))  # older than DAY - 7 days
    score_day(settings, matured)
    score_day(settings, DAY)
    out = score_day(settings, DAY)  # a re-run replaces the page and the MLflow run
    page = settings.reports_dir / f"{DAY}.html"
    assert out["report"] == str(page)

    engine = db.make_engine(settings.scores_db_url)
    try:
        today = db.read_scores(engine, DAY, DAY)
        old = db.read_scores(engine, matured, matured)
    finally:
        engine.dispose()
    old_alerts = old.filter(pl.col("alert")).join(labels, on="event_id", how="left")
    n_fraud_alerts = int((old_alerts["is_fraud"] == 1).sum())
    n_fraud = int((old.join(labels, on="event_id")["is_fraud"] == 1).sum())

    dom = dump_dom(page.as_uri())
    parsed = _Text()
    parsed.feed(dom)
    text = " ".join(" ".join(parsed.text).split())
    assert parsed.by_id["n-transactions"].strip() == str(today.height)
    assert parsed.by_id["n-alerts"].strip() == "15"
    assert parsed.by_id["max-score"].strip() == f"{today['risk_score'].max():.4f}"
    quality = " ".join(parsed.by_id["quality"].split())
    precision = f"{100 * n_fraud_alerts / 15:.1f}%"
    recall = f"{100 * n_fraud_alerts / n_fraud:.1f}%" if n_fraud else "n/a"
    assert n_fraud > 0
    assert f"{matured} {old.height} 15 {n_fraud} {n_fraud_alerts} {precision} {recall}" in quality
    assert str(DAY) not in quality  # today's labels have not matured
    assert "risk_score" in parsed.by_id["drift"] and "log_amount" in parsed.by_id["drift"]
    assert len(parsed.images) == 2 and all(
        src.startswith("data:image/png;base64,") and len(src) > 5_000 for src in parsed.images
    )
    for event_id, customer in today.filter(pl.col("alert")).select("event_id", "customer_id").iter_rows():
        assert f"#{today.filter(pl.col('event_id') == event_id)['risk_rank'][0]} {event_id}" in text
        assert customer in text
    assert len(re.findall(r"<details", dom)) == 15
    assert "http://" not in dom and "https://" not in dom  # self-contained

    shot = screenshot(page.as_uri(), SCREENSHOTS / "report.png", size="1200,2000")
    assert shot.stat().st_size > 50_000

    use_tracking(settings.tracking_uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(REPORTS_EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.report_date = '{DAY}'")
    assert len(runs) == 1 and runs[0].info.run_id == out["report_run_id"]
    assert runs[0].data.metrics["n_alerts"] == 15
    assert runs[0].data.metrics["n_transactions"] == today.height
    assert {f.path for f in client.list_artifacts(runs[0].info.run_id)} >= {f"{DAY}.html", "drift.json"}


def test_daily_counts_on_duckdb_and_postgresql(db_url, tmp_path) -> None:  # noqa: F811
    """The report's per-day SQL (alerts, known frauds, frauds alerted) on both backends."""
    from datetime import datetime, timezone

    from pipeline import db
    from pipeline.config import Settings
    from pipeline.report import daily_counts

    from .test_db import labels_frame, write

    engine = db.make_engine(db_url)
    try:
        db.init_schema(engine)
        d1, d2 = date(2026, 1, 5), date(2026, 1, 6)
        write(engine, d1, "1", ["a", "b", "c", "d"], alerts=2)
        write(engine, d2, "1", ["e", "f"], alerts=1)
        write(engine, d2, "2", ["e", "f"], alerts=2, scored_at=datetime(2026, 1, 8))  # latest version wins
        t = datetime(2026, 1, 9, tzinfo=timezone.utc)
        db.upsert_labels(engine, labels_frame([("a", 1, t), ("c", 1, t), ("b", 0, t), ("f", 1, t)]))
    finally:
        engine.dispose()
    counts = daily_counts(Settings(home=tmp_path / "home", scores_url=db_url), d2)
    assert counts.rows() == [(d1, 4, 2, 2, 1), (d2, 2, 2, 1, 1)]
    q = matured_quality(counts, d2, label_delay_days=1)
    assert q["precision"].to_list() == [0.5] and q["recall"].to_list() == [0.5]

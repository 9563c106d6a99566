"""After a day is scored: drift against the training window, a self-contained HTML report, MLflow.

``post_score`` is the one call ``score_day`` makes. It writes
``$FRAUDSEQ_HOME/reports/drift/date=D.json`` and ``$FRAUDSEQ_HOME/reports/D.html`` (charts
embedded as base64 PNG, no external file or network access), and logs the page to the
``fraudseq-reports`` MLflow experiment, one run per day (a re-run replaces it).
"""

from __future__ import annotations

import base64
import functools
import io
import json
import logging
import time
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from pipeline.config import Settings

if TYPE_CHECKING:
    from jinja2 import Template

    from pipeline.registry import ModelBundle

log = logging.getLogger(__name__)

REPORTS_EXPERIMENT = "fraudseq-reports"
VOLUME_DAYS = 30
TIMELINE_DAYS = 7  # how far back an alert's customer timeline reaches
TIMELINE_EVENTS = 15  # events shown per alert, ending with the alerted transaction
HIST_BINS = 40  # bins of the risk-score histogram over [0, 1]

_DAILY_SQL = """
    SELECT s.score_date,
           COUNT(*) AS n_transactions,
           CAST(SUM(CASE WHEN s.alert THEN 1 ELSE 0 END) AS BIGINT) AS n_alerts,
           CAST(SUM(CASE WHEN l.is_fraud = 1 THEN 1 ELSE 0 END) AS BIGINT) AS n_fraud,
           CAST(SUM(CASE WHEN s.alert AND l.is_fraud = 1 THEN 1 ELSE 0 END) AS BIGINT) AS n_fraud_alerts
    FROM current_scores AS s
    LEFT JOIN fraud_labels AS l ON l.event_id = s.event_id
    WHERE s.score_date BETWEEN :start AND :end
    GROUP BY s.score_date
    ORDER BY s.score_date
"""


def post_score(
    settings: Settings,
    day: date,
    bundle: ModelBundle,
    scores: pl.DataFrame,
    features: np.ndarray,
    alerted_events: pl.DataFrame | None = None,
) -> dict[str, Any]:
    """Drift record and warning, the day's HTML report and its MLflow run.

    ``scores`` is the day's ``transaction_scores`` frame (already written), ``features`` the
    raw per-event feature rows of the same transactions, in the same order. ``alerted_events``:
    the alerted customers' events, for the timelines (see ``alert_timelines``).
    """
    from pipeline import drift

    record = None
    if bundle.drift_reference:
        psi = drift.day_drift(
            bundle.drift_reference,
            features,
            bundle.normaliser.feature_names,
            scores["risk_score"].to_numpy(),
        )
        record = drift.summarise(day, psi, settings.drift_threshold, scores.height)
        drift.write_drift(settings.reports_dir, record)
        drift.warn_if_drifted(record)
    else:
        log.warning("model has no drift reference (trained before drift tracking): drift not computed")
    daily = daily_counts(settings, day)
    path = write_report(settings, day, scores, daily, record, alerted_events)
    run_id = log_report(settings, day, path, scores, daily, record)
    return {
        "report": str(path),
        "report_run_id": run_id,
        "drift_max_psi": record["max_psi"] if record else None,
        "drifted": record["drifted"] if record else [],
    }


# ---------------------------------------------------------------- data


def daily_counts(settings: Settings, day: date) -> pl.DataFrame:
    """Per scored day of the last 30: transactions, alerts, known frauds, frauds among alerts."""
    import sqlalchemy as sa

    from pipeline import db

    engine = db.make_engine(settings.scores_db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(_DAILY_SQL), {"start": day - timedelta(days=VOLUME_DAYS - 1), "end": day}
            ).fetchall()
    finally:
        engine.dispose()
    schema = {
        "score_date": pl.Date,
        "n_transactions": pl.Int64,
        "n_alerts": pl.Int64,
        "n_fraud": pl.Int64,
        "n_fraud_alerts": pl.Int64,
    }
    frame = pl.DataFrame([tuple(r) for r in rows], schema=schema, orient="row")
    return frame.fill_null(0)


def matured_quality(daily: pl.DataFrame, day: date, label_delay_days: int) -> pl.DataFrame:
    """Alert precision and recall on the days whose labels have matured (older than the delay)."""
    matured = daily.filter(pl.col("score_date") <= day - timedelta(days=label_delay_days))
    return matured.with_columns(
        pl.when(pl.col("n_alerts") > 0)
        .then(pl.col("n_fraud_alerts") / pl.col("n_alerts"))
        .otherwise(None)
        .alias("precision"),
        pl.when(pl.col("n_fraud") > 0)
        .then(pl.col("n_fraud_alerts") / pl.col("n_fraud"))
        .otherwise(None)
        .alias("recall"),
    )


# the columns of a timeline row, in order; "what" is the channel of a transaction, the event type of a login
TIMELINE_COLUMNS = (
    "event_id",
    "customer_id",
    "event_time",
    "source",
    "what",
    "amount",
    "currency",
    "merchant_id",
    "country",
    "device_id",
)


def _timeline_events(settings: Settings, days: list[date], customers: list[str]) -> pl.DataFrame:
    """The customers' validated events of ``days``, in contract order, as TIMELINE_COLUMNS."""
    from features.hashing import of_customers
    from pipeline.validate import hashed_days, read_validated

    # on hashed days the scan first tests the stored hash (an integer, which skips row groups);
    # the id test then drops any customer whose hash collides with an alerted one's
    where = of_customers(customers) if hashed_days(settings, days) else None
    mine = pl.col("customer_id").is_in(customers)
    tx = (
        read_validated(settings, "transactions", days, where)
        .filter(mine)
        .select(
            "event_id",
            "customer_id",
            "event_time",
            pl.lit(1, pl.Int8).alias("source"),
            pl.col("channel").alias("what"),
            pl.col("amount").cast(pl.Float64),
            "currency",
            "merchant_id",
            "country",
            "device_id",
        )
    )
    logins = (
        read_validated(settings, "logins", days, where)
        .filter(mine)
        .select(
            "event_id",
            "customer_id",
            "event_time",
            pl.lit(0, pl.Int8).alias("source"),
            pl.col("event_type").alias("what"),
            pl.lit(None, pl.Float64).alias("amount"),
            pl.lit(None, pl.String).alias("currency"),
            pl.lit(None, pl.String).alias("merchant_id"),
            "country",
            "device_id",
        )
    )
    both = pl.concat([tx, logins]).sort("customer_id", "event_time", "source", "event_id")
    return both.select(TIMELINE_COLUMNS).collect()


def alert_timelines(
    settings: Settings, day: date, alerts: pl.DataFrame, events: pl.DataFrame | None = None
) -> dict[str, list[dict[str, Any]]]:
    """For each alert (event_id): its customer's last events up to and including it.

    ``events``: the alerted customers' events as ``load_events`` builds them (contract order, the
    reason columns kept), over the whole ``settings.history_range(day)`` and ``day``, which holds
    the timelines' days; ``finalise_day`` has them already for the reasons. None: read them.
    """
    if alerts.is_empty():
        return {}
    days = [day - timedelta(days=k) for k in range(TIMELINE_DAYS, -1, -1)]
    customers = alerts["customer_id"].unique().to_list()
    if events is None:
        events = _timeline_events(settings, days, customers)
    else:
        what = pl.when(pl.col("source") == 1).then(pl.col("channel")).otherwise(pl.col("kind"))
        events = (
            events.filter(
                pl.col("customer_id").is_in(pl.Series(customers, dtype=pl.String).implode()),
                pl.col("event_time").dt.date().is_between(days[0], days[-1]),
            )
            .with_columns(what.alias("what"))
            .select(TIMELINE_COLUMNS)
        )
    by_customer = events.partition_by("customer_id", as_dict=True, maintain_order=True)
    out: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts.iter_rows(named=True):
        cust = by_customer.get((alert["customer_id"],))
        if cust is None:
            out[alert["event_id"]] = []
            continue
        reasons = {r["event_id"]: r["text"] for r in json.loads(alert["reasons"] or "[]")}
        ids = cust["event_id"].to_list()
        end = ids.index(alert["event_id"]) + 1 if alert["event_id"] in ids else len(ids)
        rows = cust.slice(max(0, end - TIMELINE_EVENTS), min(end, TIMELINE_EVENTS)).to_dicts()
        for r in rows:
            r["reason"] = reasons.get(r["event_id"])
            r["is_alert"] = r["event_id"] == alert["event_id"]
        out[alert["event_id"]] = rows
    return out


# ---------------------------------------------------------------- charts


def _png(fig: Any) -> str:
    """Base64 PNG of ``fig``, drawn once: its margins are fixed where it was made
    (``bbox_inches="tight"`` would draw the figure twice, to measure and then to paint)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def score_histogram(scores: pl.DataFrame) -> str:
    """Base64 PNG: distribution of the day's risk scores, the alert cut-off marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 2.6))
    fig.subplots_adjust(left=0.13, right=0.98, bottom=0.19, top=0.96)
    ax = fig.subplots()
    # counted by numpy and drawn as one filled outline: ``ax.hist`` would make a patch per bin
    counts, edges = np.histogram(scores["risk_score"].to_numpy(), bins=HIST_BINS, range=(0.0, 1.0))
    ax.stairs(counts, edges, fill=True, color="#4c72b0")
    alerts = scores.filter(pl.col("alert"))
    if alerts.height:
        cut = float(alerts["risk_score"].min())  # type: ignore[arg-type]
        ax.axvline(cut, color="#c44e52", linestyle="--", label=f"alert cut-off {cut:.3f}")
        ax.legend(loc="upper right")
    ax.set_xlabel("risk_score")
    ax.set_ylabel("transactions")
    return _png(fig)


def volume_chart(daily: pl.DataFrame, day: date) -> str:
    """Base64 PNG: alerts per day over the last 30 days."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 2.4))
    fig.subplots_adjust(left=0.13, right=0.98, top=0.96)
    ax = fig.subplots()
    ax.bar(daily["score_date"].to_list(), daily["n_alerts"].to_list(), color="#dd8452")
    ax.set_xlim(day - timedelta(days=VOLUME_DAYS), day + timedelta(days=1))  # type: ignore[arg-type]
    ax.set_ylabel("alerts")
    fig.autofmt_xdate(bottom=0.27)  # room for the slanted dates
    return _png(fig)


# ---------------------------------------------------------------- page

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>fraudseq report {{ day }}</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1100px; }
 table { border-collapse: collapse; margin: .5em 0 1em; font-size: 13px; }
 th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; }
 th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
 td.over { background: #f8d7da; font-weight: bold; }
 .warn { background: #fff3cd; border: 1px solid #e0a800; padding: .6em; }
 .ok { background: #e8f5e9; border: 1px solid #81c784; padding: .6em; }
 tr.alert td { font-weight: bold; } tr.reason td { background: #fdecea; }
 .kpi { display: inline-block; margin-right: 2em; } .kpi b { font-size: 1.6em; display: block; }
 details { margin: .3em 0; } summary { cursor: pointer; }
</style></head><body>
<h1>fraudseq daily report: {{ day }}</h1>
<p>Model {{ model_name }} version {{ model_version }}. Label delay {{ label_delay }} days.</p>
<div>
 <span class="kpi">transactions scored<b id="n-transactions">{{ n_transactions }}</b></span>
 <span class="kpi">alerts<b id="n-alerts">{{ n_alerts }}</b></span>
 <span class="kpi">highest score<b id="max-score">{{ "%.4f"|format(max_score) }}</b></span>
 <span class="kpi">worst PSI<b id="max-psi">{{ max_psi_text }}</b></span>
</div>

<h2>Drift</h2>
{% if drift is none %}<p class="warn">No drift reference in this model version.</p>
{% elif drift.drifted %}<p class="warn" id="drift-warning">Drift warning: PSI above {{ drift.threshold }} for
 {{ drift.drifted|join(", ") }}. Check the input feeds. Under Airflow this emits <code>fraudseq_drift</code>, which triggers
 <code>fraudseq_train</code> (the gate still decides).</p>
{% else %}<p class="ok">No drift: every PSI is at most {{ drift.threshold }}.</p>{% endif %}
{% if drift is not none %}
<table id="drift"><tr>{% for _ in range(3) %}<th>column</th><th>PSI</th>{% endfor %}</tr>
{% for row in drift_rows|batch(3) %}<tr>{% for name, value in row %}<td>{{ name }}</td>
<td class="num{{ ' over' if value > drift.threshold else '' }}">{{ "%.3f"|format(value) }}</td>{% endfor %}</tr>
{% endfor %}</table>
<p>PSI of the day against 10 quantile bins fixed on the training window; sorted, worst first;
 red above {{ drift.threshold }}.</p>{% endif %}

<h2>Score distribution</h2>
<img alt="score distribution" src="data:image/png;base64,{{ hist_png }}">

<h2>Alert volume, last {{ volume_days }} days</h2>
<img alt="alert volume" src="data:image/png;base64,{{ volume_png }}">

<h2>Alert precision and recall (matured days)</h2>
{% if quality %}
<table id="quality"><tr><th>day</th><th>transactions</th><th>alerts</th><th>frauds known</th>
<th>frauds alerted</th><th>precision</th><th>recall</th></tr>
{% for q in quality %}<tr><td>{{ q.score_date }}</td><td class="num">{{ q.n_transactions }}</td>
<td class="num">{{ q.n_alerts }}</td><td class="num">{{ q.n_fraud }}</td><td class="num">{{ q.n_fraud_alerts }}</td>
<td class="num">{{ pct(q.precision) }}</td><td class="num">{{ pct(q.recall) }}</td></tr>{% endfor %}
</table>
{% else %}<p>No scored day is older than the label delay yet.</p>{% endif %}

<h2>Alerts ({{ n_alerts }})</h2>
<table id="alerts"><tr><th>rank</th><th>event</th><th>customer</th><th>time (UTC)</th><th>score</th><th>why</th></tr>
{% for a in alerts %}<tr><td class="num">{{ a.risk_rank }}</td><td>{{ a.event_id }}</td><td>{{ a.customer_id }}</td>
<td>{{ a.event_time }}</td><td class="num">{{ "%.4f"|format(a.risk_score) }}</td>
<td>{% for r in a.reasons %}{{ r.text }}{% if not loop.last %}; {% endif %}{% endfor %}</td></tr>{% endfor %}
</table>

<h2>Alert timelines</h2>
{% for a in alerts %}
<details {% if loop.index <= 5 %}open{% endif %}><summary>#{{ a.risk_rank }} {{ a.event_id }}
 (customer {{ a.customer_id }}, score {{ "%.4f"|format(a.risk_score) }})</summary>
<table class="timeline"><tr><th>time (UTC)</th><th>event</th><th>amount</th><th>merchant / payee</th>
<th>country</th><th>device</th><th>reason</th></tr>
{% for e in timelines.get(a.event_id, []) %}<tr class="{{ 'alert' if e.is_alert else '' }} {{ 'reason' if e.reason else '' }}">
<td>{{ e.event_time }}</td><td>{{ e.what }}</td>
<td class="num">{{ "%.2f %s"|format(e.amount, e.currency or "") if e.amount is not none else "" }}</td>
<td>{{ e.merchant_id or "" }}</td><td>{{ e.country or "" }}</td><td>{{ e.device_id or "" }}</td>
<td>{{ e.reason or "" }}</td></tr>{% endfor %}
</table></details>
{% endfor %}
</body></html>
"""


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


@functools.cache
def _template() -> Template:
    """The page template, compiled once per process (compiling took about 60 ms a report)."""
    from jinja2 import Environment

    env = Environment(autoescape=True)
    env.globals["pct"] = _pct
    return env.from_string(_TEMPLATE)


def render_report(
    settings: Settings,
    day: date,
    scores: pl.DataFrame,
    daily: pl.DataFrame,
    drift_record: dict[str, Any] | None,
    alerted_events: pl.DataFrame | None = None,
) -> str:
    """The report page as one self-contained HTML string (``alerted_events``: see ``alert_timelines``)."""
    alerts = scores.filter(pl.col("alert")).sort("risk_rank")
    alert_rows = [
        {**a, "reasons": json.loads(a["reasons"] or "[]"), "event_time": str(a["event_time"])[:19]}
        for a in alerts.select(
            "risk_rank", "event_id", "customer_id", "event_time", "risk_score", "reasons"
        ).to_dicts()
    ]
    timelines = alert_timelines(settings, day, alerts, alerted_events)
    for rows in timelines.values():
        for r in rows:
            r["event_time"] = str(r["event_time"])[:19]
    quality = matured_quality(daily, day, settings.label_delay_days).to_dicts()
    drift_rows = sorted((drift_record or {}).get("psi", {}).items(), key=lambda kv: -kv[1])
    return _template().render(
        day=day.isoformat(),
        model_name=scores["model_name"][0] if scores.height else settings.model_name,
        model_version=scores["model_version"][0] if scores.height else "-",
        label_delay=settings.label_delay_days,
        n_transactions=scores.height,
        n_alerts=alerts.height,
        max_score=float(scores["risk_score"].max() or 0.0) if scores.height else 0.0,  # type: ignore[arg-type]
        max_psi_text=f"{drift_record['max_psi']:.3f}" if drift_record else "n/a",
        drift=drift_record,
        drift_rows=drift_rows,
        hist_png=score_histogram(scores),
        volume_png=volume_chart(daily, day),
        volume_days=VOLUME_DAYS,
        quality=quality,
        alerts=alert_rows,
        timelines=timelines,
    )


def report_path(settings: Settings, day: date) -> Path:
    return settings.reports_dir / f"{day.isoformat()}.html"


def write_report(
    settings: Settings,
    day: date,
    scores: pl.DataFrame,
    daily: pl.DataFrame,
    drift_record: dict[str, Any] | None,
    alerted_events: pl.DataFrame | None = None,
) -> Path:
    """Render and write ``reports/D.html`` atomically; returns its path."""
    path = report_path(settings, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(
        render_report(settings, day, scores, daily, drift_record, alerted_events), encoding="utf-8"
    )
    tmp.replace(path)
    return path


# ---------------------------------------------------------------- MLflow


def log_report(
    settings: Settings,
    day: date,
    path: Path,
    scores: pl.DataFrame,
    daily: pl.DataFrame,
    drift_record: dict[str, Any] | None,
) -> str:
    """One run per day in ``fraudseq-reports``: the page, the drift record, the key numbers.

    An earlier run of the same day is deleted first, so a re-run replaces it.
    """
    from mlflow.entities import Metric, Param, RunTag

    from mlflow import MlflowClient
    from pipeline.registry import use_tracking

    use_tracking(settings.tracking_uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(REPORTS_EXPERIMENT)
    if exp is None:
        root = settings.home_dir / "mlartifacts"
        root.mkdir(parents=True, exist_ok=True)
        exp_id = client.create_experiment(REPORTS_EXPERIMENT, artifact_location=root.resolve().as_uri())
    else:
        exp_id = exp.experiment_id
    for old in client.search_runs([exp_id], filter_string=f"tags.report_date = '{day.isoformat()}'"):
        client.delete_run(old.info.run_id)

    run = client.create_run(
        exp_id, run_name=f"report {day.isoformat()}", tags={"report_date": day.isoformat()}
    )
    run_id = run.info.run_id
    metrics = {"n_transactions": float(scores.height), "n_alerts": float(scores["alert"].sum())}
    if drift_record:
        metrics["max_psi"] = float(drift_record["max_psi"])
        if drift_record["score_psi"] is not None:
            metrics["score_psi"] = float(drift_record["score_psi"])
        metrics["n_drifted"] = float(len(drift_record["drifted"]))
    quality = matured_quality(daily, day, settings.label_delay_days).drop_nulls("precision")
    if quality.height:
        hits, alerted = int(quality["n_fraud_alerts"].sum()), int(quality["n_alerts"].sum())
        metrics["matured_alert_precision"] = hits / alerted
    version = str(scores["model_version"][0]) if scores.height else ""
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, int(time.time() * 1000), 0) for k, v in metrics.items()],
        params=[Param("date", day.isoformat()), Param("model_version", version)],
        tags=[RunTag("drift", "warn" if drift_record and drift_record["drifted"] else "ok")],
    )
    client.log_artifact(run_id, str(path))
    if drift_record:
        client.log_dict(run_id, drift_record, "drift.json")
    client.set_terminated(run_id)
    return str(run_id)

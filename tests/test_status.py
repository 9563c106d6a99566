"""`fraudseq status` and the stdout/stderr split of long commands."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from pipeline.cli import app

from .conftest import ZONE_START, use_home

DAY = ZONE_START + timedelta(days=24)


def test_status_of_an_empty_home(tmp_path, monkeypatch) -> None:
    use_home(monkeypatch, tmp_path / "home")
    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["champion_version"] is None
    assert status["last_validated_day"] is None and status["last_scored_day"] is None
    assert status["latest_alerts"] is None and status["drift"] is None
    human = CliRunner().invoke(app, ["status"])
    assert "no champion yet" in human.stdout and "drift:          not computed yet" in human.stdout


@pytest.mark.slow
def test_status_after_a_backfill_names_champion_days_alerts_and_drift(
    home_copy, small_zone, monkeypatch
) -> None:
    use_home(monkeypatch, home_copy, small_zone)
    monkeypatch.setenv("FRAUDSEQ_ALERT_BUDGET", "12")
    runner = CliRunner()
    backfill = runner.invoke(app, ["backfill", "--start", str(DAY), "--end", str(DAY), "--json"])
    assert backfill.exit_code == 0, backfill.output
    # progress bars and logs go to stderr: stdout is exactly one JSON object
    assert json.loads(backfill.stdout)["days"][0]["date"] == str(DAY)

    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["champion_version"] == "1"
    assert status["champion_train_window"] == f"{ZONE_START}..{ZONE_START + timedelta(days=20)}"
    assert status["last_validated_day"] == str(ZONE_START + timedelta(days=27))
    assert status["last_scored_day"] == str(DAY)
    assert status["latest_alerts"] == 12 and status["latest_transactions"] > 12
    assert status["latest_report"].endswith(f"reports/{DAY}.html")
    drift = status["drift"]
    assert drift["date"] == str(DAY) and drift["threshold"] == 0.2
    assert 0 < drift["max_psi"] and isinstance(drift["drifted"], list)

    human = runner.invoke(app, ["status"]).stdout
    assert f"v1 (trained on {ZONE_START}" in human
    assert f"last scored:    {DAY} ({status['latest_transactions']} transactions, 12 alerts)" in human
    assert f"on {DAY}" in human

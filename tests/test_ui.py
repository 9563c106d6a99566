"""The two UIs of docs/operations.md: each starts, serves the project's DAGs or runs, and stops in 2 minutes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from .browser import SCREENSHOTS, app_screenshot, free_port
from .conftest import ROOT

BIN = Path(sys.executable).parent
LIMIT_S = 120
DAG_IDS = {"fraudseq_validate", "fraudseq_score", "fraudseq_train"}


def _get_json(url: str, data: dict | None = None) -> dict:
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)


def _wait(check: Callable[[], bool], proc: subprocess.Popen, deadline: float, log: Path) -> None:
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"server not ready in time: {log.read_text()[-2000:]}")
        time.sleep(1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(proc: subprocess.Popen, grace_s: float = 40) -> None:
    """SIGTERM the server's process group (started in its own session), SIGKILL what lingers."""
    if _group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    if _group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(1)
    proc.wait(timeout=10)
    assert not _group_alive(proc.pid), "server processes survived SIGKILL"


@pytest.mark.slow
def test_airflow_standalone_serves_the_project_dags(tmp_path) -> None:
    port = free_port()
    home = tmp_path / "airflow"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "PYTHONPATH": str(ROOT),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = tmp_path / "standalone.log"
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN / "airflow"), "standalone"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def dags_served() -> bool:
            return DAG_IDS <= {d["dag_id"] for d in _get_json(f"{base}/api/v2/dags")["dags"]}

        _wait(dags_served, proc, started + 100, log)
        dags = {d["dag_id"]: d for d in _get_json(f"{base}/api/v2/dags")["dags"]}
        assert dags["fraudseq_score"]["timetable_summary"] == "0 2 * * *"
        assert not any(d["has_import_errors"] for d in dags.values())
        tasks = {t["task_id"] for t in _get_json(f"{base}/api/v2/dags/fraudseq_score/tasks")["tasks"]}
        assert {"days", "pin_model", "shards", "score_shard", "finalise", "announce_drift"} <= tasks
        app_screenshot(
            f"{base}/dags/fraudseq_score",
            SCREENSHOTS / "airflow_graph_fraudseq_score.png",
            local_storage={"default_dag_view": '"graph"'},
            ready_js="document.querySelectorAll('.react-flow__node').length >= 6",
            timeout=40,
        )
    finally:
        _stop(proc)
    assert time.monotonic() - started < LIMIT_S


@pytest.mark.slow
def test_mlflow_server_serves_a_logged_run(tmp_path) -> None:
    from mlflow import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store)
    exp_id = client.create_experiment("fraudseq-ui-test", artifact_location=(tmp_path / "art").as_uri())
    run = client.create_run(exp_id, run_name="served run")
    client.log_metric(run.info.run_id, "val_average_precision", 0.633)
    client.set_terminated(run.info.run_id)

    port = free_port()
    log = tmp_path / "mlflow.log"
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "mlflow"),
                "server",
                "--backend-store-uri",
                store,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no background job runners
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(
            lambda: urllib.request.urlopen(f"{base}/health", timeout=3).status == 200, proc, started + 90, log
        )
        found = _get_json(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id]})["runs"]
        assert [r["info"]["run_id"] for r in found] == [run.info.run_id]
        assert found[0]["info"]["run_name"] == "served run"
        metric = found[0]["data"]["metrics"][0]
        assert (metric["key"], metric["value"]) == ("val_average_precision", 0.633)
        with urllib.request.urlopen(f"{base}/", timeout=5) as page:  # the UI itself
            assert page.status == 200 and b"<html" in page.read().lower()
    finally:
        _stop(proc)
    assert time.monotonic() - started < LIMIT_S

"""A real Airflow 3 deployment for tests: api-server, scheduler and dag-processor as subprocesses.

Airflow 3's LocalExecutor workers report to the api-server's execution API, so all three
processes run, sharing one AIRFLOW_HOME, one metadata DB (SQLite or PostgreSQL) and one
JWT secret. The executor is ``pipeline.executors.LocalExecutor`` (Airflow's, with torch
imported before it forks its workers), as the README's PostgreSQL deployment runs it. The
fraudseq code comes from this checkout (``PYTHONPATH``), the DAGs from its ``dags/``
folder. ``stop`` ends exactly the processes this object started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# What Airflow's processes pass to sqlite3.connect on a SQLite metadata DB
# (``AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS`` names it by import path): wait up to 60 s for
# another process's write lock, instead of sqlite3's 5 s. With the scheduler, the dag-processor
# and the api-server writing on 2 busy cores, 5 s was not always enough for a CLI command (a
# `backfill create` failed with "database is locked" five times in a row in one CI run).
SQLITE_CONNECT_ARGS: dict[str, Any] = {"timeout": 60}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AirflowServices:
    """One Airflow home with its services; use as a context manager."""

    def __init__(self, home: Path, metadata_url: str, extra_env: dict[str, str]) -> None:
        self.home = home
        self.port = free_port()
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FRAUDSEQ_", "MLFLOW_"))}
        env.update(
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            # Airflow's LocalExecutor, with torch imported before it forks its workers
            AIRFLOW__CORE__EXECUTOR="pipeline.executors.LocalExecutor",
            AIRFLOW__CORE__PARALLELISM="8",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{self.port}/execution/",
            AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__WORKERS="1",
            AIRFLOW__API_AUTH__JWT_SECRET="fraudseq-test-secret-" + "x" * 48,
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=metadata_url,
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
            AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL="5",
            AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
            PYTHONPATH=str(ROOT),
        )
        if metadata_url.startswith("sqlite"):
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] = "tests.airflow_services.SQLITE_CONNECT_ARGS"
        if metadata_url.startswith("postgresql"):
            async_url = metadata_url.split("://", 1)[1]
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = f"postgresql+psycopg_async://{async_url}"
        env.update(extra_env)
        self.env = env
        self.procs: dict[str, subprocess.Popen] = {}

    # ---------------------------------------------------------------- commands

    def airflow(self, *args: str, timeout: float = 180, attempts: int = 8) -> subprocess.CompletedProcess:
        """Run an ``airflow`` CLI command; on SQLite, retried while the scheduler holds the write lock.

        SQLite answers "database is locked" at once, without waiting, when a transaction that has
        read must upgrade to write while another process writes; only a new attempt helps then.
        """
        for attempt in range(attempts):
            proc = subprocess.run(
                [sys.executable, "-m", "airflow", *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=self.home,
            )
            if proc.returncode == 0 or "database is locked" not in proc.stdout + proc.stderr:
                break
            time.sleep(min(2 * (attempt + 1), 10))
        if proc.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
            )
        return proc

    def start(self) -> AirflowServices:
        self.airflow("db", "migrate", timeout=300)
        for name, args in (
            ("api-server", ("api-server", "--port", str(self.port))),
            ("dag-processor", ("dag-processor",)),
            ("scheduler", ("scheduler",)),
        ):
            log = open(self.home / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                start_new_session=True,  # its own process group: stop() ends its children too
            )
        self._wait_for_api()
        return self

    def _wait_for_api(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(1)
        raise TimeoutError(f"api-server did not listen on {self.port}: {self.logs()}")

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: {self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.home.glob("*.log"))
        )

    def executor_workers(self) -> list[int]:
        """The pids of the LocalExecutor's worker processes: the scheduler's children so titled."""
        scheduler = self.procs["scheduler"].pid
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                title = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue  # the process ended while we looked
            if ppid == scheduler and "LocalExecutor" in title:
                pids.append(int(stat.parent.name))
        return pids

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Until the dag-processor has serialised ``dag_id`` into the metadata DB."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            listing = self.airflow("dags", "list", "--output", "json").stdout
            if any(d.get("dag_id") == dag_id for d in _json_list(listing)):
                return
            time.sleep(3)
        raise TimeoutError(f"{dag_id} never parsed: {self.logs()}")

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return _json_list(self.airflow("dags", "list-runs", dag_id, "--output", "json").stdout)

    def wait_for_runs(
        self, dag_id: str, n: int, run_id_prefix: str = "", timeout: float = 600
    ) -> list[dict[str, Any]]:
        """Until ``n`` runs of ``dag_id`` (run_id starting with the prefix) have finished; fails on a failed run."""
        deadline = time.monotonic() + timeout
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            self._check_alive()
            runs = [r for r in self.dag_runs(dag_id) if str(r.get("run_id", "")).startswith(run_id_prefix)]
            done = [r for r in runs if r.get("state") in ("success", "failed")]
            if any(r.get("state") == "failed" for r in done):
                raise AssertionError(f"a run of {dag_id} failed: {runs}\n{self.task_logs()}")
            if len(done) >= n:
                return done
            time.sleep(3)
        raise TimeoutError(f"{dag_id}: {runs}\n{self.logs()}\n{self.task_logs()}")

    def task_logs(self) -> str:
        files = sorted((self.home / "logs").rglob("*.log"))[-6:]
        return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-2000:]}" for p in files)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def __enter__(self) -> AirflowServices:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _json_list(text: str) -> list[dict[str, Any]]:
    """The JSON array in a CLI's stdout (Airflow may print warnings before it)."""
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if line.startswith(("[{", "[]")):
            return json.loads("\n".join(lines[number:]))
    return []

"""What a ``fraudseq_score`` DAG run costs on a real Airflow stack, Airflow's own part included.

Usage, from the repository root, with PostgreSQL (and Redis, for Celery) running and a bench
workdir W that holds the zone (``python -m bench --rows e2e_duckdb --workdir W``) or the daily
zone (``--rows daily``):
python -m bench.dag_tasks --workdir W [--executor celery|local] [--zone e2e|daily] [--shards 8] [--runs 2]

``bench.task_overhead`` times a shard task's own code in a fresh or forked process; this runs
the real thing. It starts a stack on a fresh PostgreSQL metadata database, triggers
``fraudseq_score`` for the zone's last validated day in ``--shards`` shards, and reads each
task's start and end from the metadata database. Tasks run one at a time on both stacks. It
compares two kinds of worker, alternating, ``--runs`` times each:

- ``--executor celery``: the Celery recipe (``deploy/start-celery.sh``: api-server, scheduler,
  dag-processor and one worker of concurrency 1, on a Redis database number), its worker with
  only Airflow's preloads (``AIRFLOW__CELERY__EXTRA_CELERY_CONFIG='{}'``, the recipe before
  ``pipeline.worker_preload``) or as ``deploy/celery.env`` sets it (torch imported too);
- ``--executor local``: api-server, scheduler and dag-processor with a LocalExecutor of
  parallelism 1, Airflow's own or ``pipeline.executors.LocalExecutor``.

The reference is the same shards scored in one process after a warm-up (the daily row's way).
Each stack starts from nothing; the validated days reach the workers through a shared folder
of hard links to the zone's files, and the workers' ``FRAUDSEQ_HOME`` is empty, so the zone is
not written. The scores go to a DuckDB file in a scratch folder, which is removed afterwards.
Prints the medians of the shard tasks' durations, the DAG run's wall time and their ratios
to the in-process shard. Not a timed row of the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import setup
from bench.rows import pg_database

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _zone(spec: dict, which: str) -> tuple[Path, str]:
    """(validated home, MLflow tracking URI) of the chosen bench zone; the champion is the main zone's."""
    tracking = setup.settings_for(Path(spec["zone"]) / "home").tracking_uri
    home = Path(spec["zone" if which == "e2e" else "daily_zone"]) / "home"
    if not (home / "validated").is_dir():
        raise SystemExit(f"no validated zone at {home}: run `python -m bench --rows ... --workdir` first")
    return home, tracking


def _link_shared(home: Path, shared: Path) -> None:
    """The shared location's layout, as hard links to the zone's validated files and reports."""
    for sub in ("validated", "reports/validation"):
        shutil.copytree(home / sub, shared / sub, copy_function=os.link)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rows(url: str, sql: str, **params: object) -> list[tuple]:
    """Rows of ``sql`` (``%(name)s`` parameters) on the metadata database at SQLAlchemy ``url``."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


class CeleryStack:
    """The Celery recipe (``deploy/start-celery.sh``) with one worker of concurrency 1."""

    def __init__(self, env: dict[str, str], tag: str, args: argparse.Namespace) -> None:
        env.update(
            AIRFLOW_BIN=str(BIN / "airflow"),
            AIRFLOW_API_PORT=str(_free_port()),
            AIRFLOW__CELERY__BROKER_URL=args.redis_url,
            FRAUDSEQ_DEPLOY_RUN_DIR=str(Path(env["AIRFLOW_HOME"]) / "run"),
            FRAUDSEQ_CELERY_WORKERS="1",
            FRAUDSEQ_CELERY_QUEUE=f"fraudseq_bench_{tag}",
            FRAUDSEQ_WORKER_PREFIX=f"b{tag}-",
        )
        self.env = env
        self.script = str(ROOT / "deploy" / "start-celery.sh")

    def start(self) -> None:
        subprocess.run(
            ["bash", self.script, "start"], env=self.env, check=True, capture_output=True, timeout=420
        )

    def airflow(self, *cli: str) -> None:
        shell = f'source "{ROOT}/deploy/celery.env" && exec "$AIRFLOW_BIN" "$@"'
        subprocess.run(
            ["bash", "-c", shell, "airflow", *cli], env=self.env, check=True, capture_output=True, timeout=180
        )

    def stop(self) -> None:
        subprocess.run(
            ["bash", self.script, "stop"], env=self.env, capture_output=True, timeout=120, check=False
        )


class LocalStack:
    """api-server, scheduler and dag-processor with a LocalExecutor of parallelism 1."""

    def __init__(self, env: dict[str, str], tag: str, args: argparse.Namespace) -> None:
        port = _free_port()
        metadata = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        env.update(
            AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__PARALLELISM="1",  # tasks one at a time, as the one Celery worker runs them
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
            AIRFLOW__API__PORT=str(port),
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API_AUTH__JWT_SECRET=uuid.uuid4().hex * 2,
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC=metadata,  # psycopg 3 serves async too
            PYTHONPATH=str(ROOT),
        )
        self.env = env
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        self.airflow("db", "migrate")
        home = Path(self.env["AIRFLOW_HOME"])
        for component in ("api-server", "scheduler", "dag-processor"):
            log = open(home / f"{component}.log", "w")  # noqa: SIM115 - closed with the process
            self.procs.append(
                subprocess.Popen(
                    [str(BIN / "airflow"), component],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # stop() ends its children (the executor's workers) too
                )
            )

    def airflow(self, *cli: str) -> None:
        subprocess.run(
            [str(BIN / "airflow"), *cli], env=self.env, check=True, capture_output=True, timeout=300
        )

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


# per executor: the stack, and each compared kind's settings (applied after the shared ones)
EXECUTORS: dict[str, tuple[type[CeleryStack] | type[LocalStack], dict[str, dict[str, str]]]] = {
    "celery": (
        CeleryStack,
        {
            "Airflow's preloads": {"AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": "{}"},
            "the recipe (torch preloaded)": {},
        },
    ),
    "local": (
        LocalStack,
        {
            "Airflow's LocalExecutor": {"AIRFLOW__CORE__EXECUTOR": "LocalExecutor"},
            "pipeline.executors.LocalExecutor": {
                "AIRFLOW__CORE__EXECUTOR": "pipeline.executors.LocalExecutor"
            },
        },
    ),
}


def one_run(args: argparse.Namespace, scratch: Path, tracking: str, day: str, kind: dict[str, str]) -> dict:
    """Start a stack, run fraudseq_score for ``day`` once, stop it; task and run durations."""
    metadata, drop = pg_database(args.pg_admin)
    tag = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FRAUDSEQ_", "MLFLOW_"))}
    env.update(
        PATH=f"{BIN}:{env.get('PATH', '')}",
        AIRFLOW_HOME=str(scratch / f"airflow-{tag}"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=metadata,
        AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",  # only the triggered run
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        FRAUDSEQ_HOME=str(scratch / f"worker-home-{tag}"),
        FRAUDSEQ_SHARED_URL=(scratch / "shared").as_uri(),
        FRAUDSEQ_SCORES_URL=f"duckdb:///{scratch / f'scores-{tag}.duckdb'}",
        MLFLOW_TRACKING_URI=tracking,
    )
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True)
    stack = EXECUTORS[args.executor][0](env, tag, args)
    stack.env.update(kind)
    logs = f"logs under {env['AIRFLOW_HOME']}"
    try:
        stack.start()
        deadline = time.monotonic() + 240
        while not _rows(metadata, "SELECT 1 FROM dag WHERE dag_id = 'fraudseq_score'"):
            if time.monotonic() > deadline:
                raise SystemExit(f"the dag-processor never parsed fraudseq_score ({logs})")
            time.sleep(2)
        stack.airflow("dags", "unpause", "fraudseq_score")
        run_id = f"bench_{tag}"
        conf = json.dumps({"date": day, "shards": args.shards})
        stack.airflow("dags", "trigger", "fraudseq_score", "--run-id", run_id, "--conf", conf)
        deadline = time.monotonic() + args.timeout
        state = None
        while state not in ("success", "failed"):
            if time.monotonic() > deadline:
                raise SystemExit(f"fraudseq_score still {state} after {args.timeout} s ({logs})")
            time.sleep(2)
            got = _rows(metadata, "SELECT state FROM dag_run WHERE run_id = %(r)s", r=run_id)
            state = got[0][0] if got else None
        if state != "success":
            raise SystemExit(f"fraudseq_score {state} ({logs})")
        tasks = _rows(
            metadata,
            "SELECT task_id, EXTRACT(EPOCH FROM end_date - start_date) FROM task_instance "
            "WHERE run_id = %(r)s AND state = 'success'",
            r=run_id,
        )
        (wall,) = _rows(
            metadata,
            "SELECT EXTRACT(EPOCH FROM end_date - start_date) FROM dag_run WHERE run_id = %(r)s",
            r=run_id,
        )[0]
    finally:
        stack.stop()
        drop()
    shards = [float(s) for t, s in tasks if t == "score_shard"]
    if len(shards) != args.shards:
        raise SystemExit(f"{len(shards)} score_shard tasks succeeded, not {args.shards}")
    return {
        "shards": shards,
        "wall": float(wall),
        "tasks": {t: float(s) for t, s in tasks if t != "score_shard"},
    }


def in_process(home: Path, tracking: str, shards: int, shared: Path) -> list[float]:
    """Each shard of the day scored in this process after a warm-up shard: seconds per shard."""
    from pipeline.heap import tune_collector
    from pipeline.shards import score_shard

    tune_collector()
    # the same shared folder as the DAG runs: validated days from it, shard files into it
    settings = setup.settings_for(home, tracking=tracking).model_copy(update={"shared_url": shared.as_uri()})
    pinned, bundle, day, days, hashed = setup.last_day_inputs(settings)
    seconds = []
    for k in [0, *range(shards)]:  # shard 0 twice: the first is the warm-up
        began = time.perf_counter()
        score_shard(settings, day, k, shards, pinned, bundle=bundle, days=days, hashed=hashed)
        seconds.append(time.perf_counter() - began)
    return seconds[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="the bench workdir (its spec.json)")
    parser.add_argument("--zone", choices=("e2e", "daily"), default="e2e")
    parser.add_argument("--executor", choices=tuple(EXECUTORS), default="celery")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--runs", type=int, default=2, help="DAG runs per worker kind, alternating")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/6")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds a DAG run may take")
    args = parser.parse_args()
    spec = json.loads((args.workdir / "spec.json").read_text())
    args.pg_admin = spec["pg_admin"]
    home, tracking = _zone(spec, args.zone)

    from pipeline.validate import validated_days

    day = validated_days(setup.settings_for(home))[-1]
    scratch = Path(tempfile.mkdtemp(prefix="dag-tasks-", dir=args.workdir))
    try:
        _link_shared(home, scratch / "shared")
        reference = in_process(home, tracking, args.shards, scratch / "shared")
        kinds = EXECUTORS[args.executor][1]
        results: dict[str, list[dict]] = {v: [] for v in kinds}
        for _ in range(args.runs):
            for variant, kind in kinds.items():
                results[variant].append(one_run(args, scratch, tracking, day.isoformat(), kind))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    ref = statistics.median(reference)
    print(
        f"fraudseq_score for {day} ({args.zone} zone), {args.shards} shards, {args.executor}, one task at a time;"
    )
    print(
        f"  in one process (reference): {ref:.2f} s a shard (median of {args.shards}), {sum(reference):.1f} s in all"
    )
    for variant, runs in results.items():
        shard = statistics.median(s for r in runs for s in r["shards"])
        walls = [r["wall"] for r in runs]
        wall = statistics.median(walls)
        others = {t: statistics.median(r["tasks"][t] for r in runs) for t in sorted(runs[0]["tasks"])}
        print(
            f"  {variant:33s} shard task {shard:5.2f} s ({shard / ref:4.2f}x, +{shard - ref:.2f} s)"
            f"  DAG run {wall:6.1f} s (runs {', '.join(f'{w:.1f}' for w in walls)})"
        )
        print("    other tasks, medians: " + ", ".join(f"{t} {s:.2f} s" for t, s in others.items()))


if __name__ == "__main__":
    main()

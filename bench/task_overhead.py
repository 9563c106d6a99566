"""What a daily shard costs as an Airflow task, which is a fresh process that loads the model.

Usage, from the repository root, after a ``python -m bench --rows daily --workdir W`` has built
the daily zone under W: python -m bench.task_overhead --workdir W [--shards 32] [--tasks 3]

The daily row scores every shard in one process. The ``fraudseq_score`` DAG runs each shard as
its own task, and each task is a new process: it imports torch, loads the pinned model and
warms its kernels before it scores. This scores shards 0 .. tasks-1 of ``--shards`` of the
daily zone's last day five ways, one shard at a time, the ways interleaved:

- **in one process**, after a warm-up shard (the reference: what the daily row measures);
- **a task loading through the registry**: a fresh process that imports MLflow and downloads
  the pinned version (what the shard task did before it loaded a staged copy);
- **a task loading the staged copy**: a fresh process that loads the bundle the pin task copied
  to the shared location (``pipeline.registry.stage_bundle``, what the shard task does), as
  an executor that starts a new interpreter per task runs it;
- **forked from a Celery worker with Airflow's preloads**: a stand-in for the worker's main
  process runs Airflow's own Celery preloads (``on_celery_import_modules``: its operators,
  NumPy, then ``gc.freeze()``), then forks the task, which loads the staged copy;
- **forked from a Celery worker that also preloaded torch**: the same, after
  ``import pipeline.worker_preload``, as ``deploy/celery.env`` makes each worker do.

A fresh process is ``python -m bench.task_overhead --task ...``: the shard task's own code
(``dags/fraudseq_score.py``), timed from the parent, so interpreter start and imports count.
A forked task is timed from the fork to its exit: a worker is started once and runs many
tasks, so its own start does not count. Airflow's own part (its supervisor, parsing the DAG
file) is in none of them. Prints the medians, the ratios to the in-process shard, and what a
day of ``--shards`` tasks adds. Each shard's output file is removed once written. Not a timed
row of the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

from bench import setup


def _settings(workdir: Path):  # noqa: ANN202
    spec = json.loads((workdir / "spec.json").read_text())
    tracking = setup.settings_for(Path(spec["zone"]) / "home").tracking_uri
    return setup.settings_for(Path(spec["daily_zone"]) / "home", tracking=tracking)


def task(args: argparse.Namespace) -> None:
    """One shard, as the DAG's shard task runs it (``--task registry`` or ``--task staged``)."""
    if args.task.startswith("forked"):
        forked(args)
        return
    from pipeline.heap import tune_collector
    from pipeline.shards import score_shard
    from pipeline.validate import validated_days

    tune_collector()
    settings = _settings(args.workdir)
    pinned = (args.model, args.version)
    bundle = None  # the registry, through MLflow
    if args.task == "staged":
        from pipeline.registry import load_staged

        bundle = load_staged(args.staged, pinned)
    else:
        from pipeline.registry import use_tracking

        use_tracking(settings.tracking_uri)
    day = validated_days(settings)[-1]
    out = score_shard(settings, day, args.shard, args.shards, pinned, bundle=bundle)
    Path(out["path"]).unlink()  # the zone's home keeps no shard output of a benchmark


def forked(args: argparse.Namespace) -> None:
    """A Celery worker's main process in miniature: preload, fork one staged task, time it.

    Prints the seconds from the fork to the task's exit as JSON on stdout.
    """
    from airflow.providers.celery.executors.celery_executor_utils import on_celery_import_modules

    on_celery_import_modules()  # what every Airflow Celery worker imports before it forks
    if args.task == "forked-torch":
        import pipeline.worker_preload  # noqa: F401  (deploy/celery.env's Celery `imports`)
    args.task = "staged"
    sys.stdout.flush()
    sys.stderr.flush()
    began = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            task(args)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    seconds = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the forked task failed: wait status {status}")
    print(json.dumps({"seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="the bench workdir (its spec.json)")
    parser.add_argument("--shards", type=int, default=32)
    parser.add_argument("--tasks", type=int, default=3, help="how many shards to time each way")
    parser.add_argument(
        "--task", choices=("registry", "staged", "forked-airflow", "forked-torch"), help=argparse.SUPPRESS
    )
    parser.add_argument("--shard", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--version", help=argparse.SUPPRESS)
    parser.add_argument("--staged", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.task:
        task(args)
        return

    from pipeline.registry import stage_bundle
    from pipeline.shards import score_shard

    settings = _settings(args.workdir)
    pinned, bundle, day, days, hashed = setup.last_day_inputs(settings)
    staged = stage_bundle(settings, *pinned)

    def in_process(k: int) -> None:
        out = score_shard(settings, day, k, args.shards, pinned, bundle=bundle, days=days, hashed=hashed)
        Path(out["path"]).unlink()

    # Airflow's imports write its default config and logs folder under AIRFLOW_HOME: keep them
    # in the workdir, not in the user's home
    env = {**os.environ, "AIRFLOW_HOME": str(args.workdir / "airflow-task-overhead")}

    def fresh(way: str, k: int) -> float | None:
        """Run one shard in a child process; a forked way returns the seconds it reports."""
        cmd = [sys.executable, "-m", "bench.task_overhead", "--workdir", str(args.workdir), "--task", way]
        cmd += ["--shards", str(args.shards), "--shard", str(k), "--model", pinned[0], "--version", pinned[1]]
        done = subprocess.run([*cmd, "--staged", staged], check=True, capture_output=True, text=True, env=env)
        return (
            float(json.loads(done.stdout.splitlines()[-1])["seconds"]) if way.startswith("forked") else None
        )

    in_process(args.tasks)  # warm-up: imports, kernels, caches (a shard not timed below)
    ways = {
        "in one process (reference)": in_process,
        "task, model through the registry": lambda k: fresh("registry", k),
        "task, staged model": lambda k: fresh("staged", k),
        "forked, Airflow's worker preloads": lambda k: fresh("forked-airflow", k),
        "forked, worker preloaded torch too": lambda k: fresh("forked-torch", k),
    }
    walls: dict[str, list[float]] = {w: [] for w in ways}
    for k in range(args.tasks):
        for way, run in ways.items():
            began = time.perf_counter()
            reported = run(k)
            walls[way].append(time.perf_counter() - began if reported is None else reported)
    ref = statistics.median(walls["in one process (reference)"])
    print(f"shards 0..{args.tasks - 1} of {args.shards}, {day}; medians of {args.tasks}, seconds per shard:")
    for way, w in walls.items():
        extra = statistics.median(w) - ref
        print(
            f"  {way:36s} {statistics.median(w):6.2f}  {statistics.median(w) / ref:5.2f}x"
            f"  (+{extra:.2f} s a shard, +{extra * args.shards:.0f} s for {args.shards} tasks)"
            f"  runs {', '.join(f'{x:.2f}' for x in w)}"
        )


if __name__ == "__main__":
    main()

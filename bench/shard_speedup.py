"""Wall time of scoring one day: all-history vs day-customers reads, and 1 vs 2 shard workers.

Usage, from the repository root:
    python -m bench.shard_speedup [--customers 3000] [--days 35] [--shards 4] [--runs 2]

It generates a landing zone, validates it and trains a 1-epoch champion in a temp
FRAUDSEQ_HOME (not timed), then times, for the last day:

1. in memory, no DB write (``score_events``): reading every customer's history (the
   pre-sharding path), then reading only the customers with a transaction that day;
2. ``score_day`` with 1 shard, end to end (reads the day's customers, scores, explains,
   commits to DuckDB);
3. the same day in ``--shards`` shards run by 1 worker process, then by 2 worker processes
   at once (separate processes, as Celery workers with concurrency 1 are), then finalised.

Every step runs in a fresh Python process, as an Airflow task does. For step 3 it reports
the wall time with process start-up (imports, model load) and without it (the longest
worker's shard compute plus finalise). It prints a JSON summary with the medians and the
machine's CPU count and load average, which matter: on 2 shared cores two workers have
little to gain.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

START = date(2026, 1, 5)


def _settings(home: Path, landing: Path, shards: int = 1):
    from pipeline.config import Settings

    return Settings(home=home, landing=landing, shards=shards)


def _pinned(settings) -> tuple[str, str]:
    from pipeline.registry import resolve_version, use_tracking

    use_tracking(settings.tracking_uri)
    return resolve_version(None, settings.model_name)


def step(args: argparse.Namespace) -> dict[str, Any]:
    """One step, inside its own process; returns its timings."""
    home, landing = Path(args.home), Path(args.landing)
    settings = _settings(home, landing)
    day = START + timedelta(days=args.days - 1)
    if args.step == "prepare":
        from pipeline.generate import generate_landing
        from pipeline.train import TrainOptions, train_model
        from pipeline.validate import validate_day

        generate_landing(landing, customers=args.customers, days=args.days, start=START, seed=11)
        for k in range(args.days):
            validate_day(settings, START + timedelta(days=k))
        end = START + timedelta(days=args.days - 8)
        train_model(settings, START, end, seed=0, options=TrainOptions(epochs=1), progress=False)
        return {}
    pinned = _pinned(settings)
    if args.step == "reference":
        from pipeline.registry import load_bundle
        from pipeline.score import score_events
        from pipeline.sequences import check_days, load_events
        from pipeline.shards import day_customers

        bundle = load_bundle(*pinned)
        days = check_days(settings, [day], settings.history_range(day))
        began = time.perf_counter()
        data = load_events(settings, days)
        ref = score_events(bundle, data, day, settings.alert_budget, *pinned)
        seconds = time.perf_counter() - began
        began = time.perf_counter()
        mine = load_events(settings, days, customers=day_customers(settings, day))
        same = score_events(bundle, mine, day, settings.alert_budget, *pinned)
        filtered_seconds = time.perf_counter() - began
        assert same["event_id"].sort().equals(ref["event_id"].sort())
        return {
            "seconds": seconds,
            "filtered_seconds": filtered_seconds,
            "transactions": ref.height,
            "events_read": data.events.height,
            "customers_read": data.events["customer_id"].n_unique(),
            "customers_with_transactions_on_day": len(day_customers(settings, day)),
        }
    if args.step == "score_day":
        from pipeline.registry import load_bundle
        from pipeline.score import score_day

        load_bundle(*pinned)  # warm the same cache the reference step warms
        began = time.perf_counter()
        out = score_day(settings, day, pinned=pinned)
        return {"seconds": time.perf_counter() - began, "transactions": out["n_transactions"]}
    if args.step == "shards":
        from pipeline.registry import load_bundle
        from pipeline.shards import score_shard

        bundle = load_bundle(*pinned)
        began = time.perf_counter()
        for k in args.shard_list:
            score_shard(settings, day, k, args.shards, pinned, bundle=bundle)
        return {"seconds": time.perf_counter() - began}
    if args.step == "finalise":
        from pipeline.shards import finalise_day

        began = time.perf_counter()
        finalise_day(settings, day, pinned, args.shards)
        return {"seconds": time.perf_counter() - began}
    raise SystemExit(f"unknown step {args.step}")


def _launch(args: argparse.Namespace, name: str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bench.shard_speedup", "--step", name, "--home", args.home]
    cmd += ["--landing", args.landing, "--customers", str(args.customers), "--days", str(args.days)]
    cmd += ["--shards", str(args.shards), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _result(proc: subprocess.Popen) -> dict[str, Any]:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"step {proc.args} failed with {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def sharded(args: argparse.Namespace, workers: int) -> tuple[float, float]:
    """(wall with process start-up, compute wall) for the shards on ``workers`` processes + finalise."""
    parts = [[k for k in range(args.shards) if k % workers == w] for w in range(workers)]
    began = time.perf_counter()
    procs = [_launch(args, "shards", "--shard-list", *map(str, part)) for part in parts]
    compute = max(_result(p)["seconds"] for p in procs)
    fin = _result(_launch(args, "finalise"))["seconds"]
    return time.perf_counter() - began, compute + fin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--days", type=int, default=35)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--step", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--home", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--landing", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--shard-list", type=int, nargs="*", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args)))
        return

    with tempfile.TemporaryDirectory(prefix="fraudseq-bench-") as tmp:
        args.home, args.landing = str(Path(tmp) / "home"), str(Path(tmp) / "landing")
        t0 = time.perf_counter()
        _result(_launch(args, "prepare"))
        prep_s = time.perf_counter() - t0
        timings: dict[str, list[float]] = {}
        ref: dict[str, Any] = {}
        for _ in range(args.runs):
            ref = _result(_launch(args, "reference"))
            timings.setdefault("in_memory_all_history_s", []).append(ref["seconds"])
            timings.setdefault("in_memory_day_customers_s", []).append(ref["filtered_seconds"])
            one = _result(_launch(args, "score_day"))
            assert one["transactions"] == ref["transactions"]
            timings.setdefault("score_day_1_shard_s", []).append(one["seconds"])
            for workers in (1, 2):
                wall, compute = sharded(args, workers)
                timings.setdefault(f"shards_{workers}_worker_wall_s", []).append(wall)
                timings.setdefault(f"shards_{workers}_worker_compute_s", []).append(compute)
        med = {k: statistics.median(v) for k, v in timings.items()}
        summary = {
            "customers": args.customers,
            "days": args.days,
            "shards": args.shards,
            "runs": args.runs,
            "scored_day": (START + timedelta(days=args.days - 1)).isoformat(),
            **{k: v for k, v in ref.items() if not k.endswith("seconds")},
            "prepare_s": round(prep_s, 1),
            **{k: round(v, 2) for k, v in med.items()},
            "speedup_day_customers_vs_all_history": round(
                med["in_memory_all_history_s"] / med["in_memory_day_customers_s"], 2
            ),
            "speedup_2_vs_1_workers_wall": round(
                med["shards_1_worker_wall_s"] / med["shards_2_worker_wall_s"], 2
            ),
            "speedup_2_vs_1_workers_compute": round(
                med["shards_1_worker_compute_s"] / med["shards_2_worker_compute_s"], 2
            ),
            "cpu_count": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

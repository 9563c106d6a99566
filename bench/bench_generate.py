"""Events per second of ``generate_landing``, files included (the target is at least 1M/s).

Usage, from the repository root: python -m bench.bench_generate [--customers 20000] [--days 35] [--runs 3]
About 20,000 customers over 35 days is about 2M events (transactions + logins). It prints
the median of the runs, and the in-memory part alone as a reference measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from pipeline.generate import generate_frames, generate_landing


def time_runs(
    customers: int, days: int, runs: int, file_format: str
) -> tuple[int, list[float], list[float], list[float]]:
    """Wall seconds of whole runs (into fresh folders), their CPU seconds, and frame building alone.

    CPU seconds matter on a shared machine: wall time there measures the neighbours too.
    """
    start = date(2026, 1, 5)
    whole, cpu, frames_only, events = [], [], [], 0
    for seed in range(runs):
        with tempfile.TemporaryDirectory() as out:
            began, began_cpu = time.perf_counter(), time.process_time()
            summary = generate_landing(Path(out), customers, days, start, seed=seed, file_format=file_format)
            whole.append(time.perf_counter() - began)
            cpu.append(time.process_time() - began_cpu)
            events = summary.n_transactions + summary.n_logins
        began = time.perf_counter()
        generate_frames(customers, days, start, seed=seed)
        frames_only.append(time.perf_counter() - began)
    return events, whole, cpu, frames_only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=35)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--format", default="parquet", choices=("parquet", "csv"))
    args = parser.parse_args()
    events, whole, cpu, frames_only = time_runs(args.customers, args.days, args.runs, args.format)
    median, median_frames = statistics.median(whole), statistics.median(frames_only)
    print(f"events per run: {events:,} ({args.customers} customers x {args.days} days, {args.format})")
    print(
        f"generate_landing: median {median:.2f} s of {[round(w, 2) for w in whole]} -> {events / median:,.0f} events/s"
    )
    print(
        f"CPU time:         median {statistics.median(cpu):.2f} s on {os.cpu_count()} cores "
        f"-> {events / statistics.median(cpu):,.0f} events per CPU second"
    )
    print(f"frames only:      median {median_frames:.2f} s -> {events / median_frames:,.0f} events/s")


if __name__ == "__main__":
    main()

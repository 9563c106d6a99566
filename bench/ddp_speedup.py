"""Speed-up of ``fraudseq train --nproc 2`` over ``--nproc 1``: one whole training run each.

Usage, from the repository root: python -m bench.ddp_speedup [--customers 400] [--days 28] [--epochs 2]

It generates and validates a landing zone in a scratch folder, then runs the ``train`` command
in a fresh process for each setting, each on its own copy of the validated home (so each
registers version 1 into an empty registry):

- ``nproc 1``: one process with torch's default threads (all cores);
- ``nproc 1, 1 thread``: the reference measured in the same run, one process as strong as one
  rank of ``nproc 2`` (torchrun's ranks get cores / N threads each);
- ``nproc 2``: two ranks under torchrun, gloo on CPU.

It prints the command's wall seconds (start-up, data loading and MLflow included), the fit
loop's windows per second, validation AP, and the speed-ups against ``nproc 1``. On a shared
machine wall time measures the neighbours too, so it also prints the load average before each run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START = date(2026, 1, 5)


def prepare(work: Path, customers: int, days: int, seed: int) -> tuple[Path, Path]:
    """A generated landing zone and a home with every day validated."""
    from pipeline.config import Settings
    from pipeline.generate import generate_landing
    from pipeline.validate import validate_day

    landing, home = work / "landing", work / "validated"
    generate_landing(landing, customers=customers, days=days, start=START, seed=seed)
    settings = Settings(home=home, landing=landing)
    for k in range(days):
        validate_day(settings, START + timedelta(days=k))
    return landing, home


def train_once(
    work: Path,
    name: str,
    validated: Path,
    landing: Path,
    days: int,
    epochs: int,
    nproc: int,
    threads: int | None,
) -> dict:
    home = work / name
    shutil.copytree(validated, home)
    env = {**os.environ, "FRAUDSEQ_HOME": str(home), "FRAUDSEQ_LANDING": str(landing)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [
        sys.executable,
        "-c",
        "from pipeline.cli import app; app()",
        "train",
        f"--train-start={START}",
        f"--train-end={START + timedelta(days=days - 1)}",
        f"--epochs={epochs}",
        f"--nproc={nproc}",
        "--json",
    ]
    load = os.getloadavg()[0]
    began = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"{name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout)
    return {
        "setting": name,
        "wall_s": wall,
        "windows_per_s": out["metrics"]["train_windows_per_s"],
        "val_ap": out["metrics"]["val_average_precision"],
        "load_before": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fraudseq-ddp-bench-") as tmp:
        work = Path(tmp)
        landing, validated = prepare(work, args.customers, args.days, args.seed)
        settings = [("nproc 1", 1, None), ("nproc 1, 1 thread", 1, 1), ("nproc 2", 2, None)]
        rows = [
            train_once(work, f"run{i}", validated, landing, args.days, args.epochs, n, t)
            for i, (_, n, t) in enumerate(settings)
        ]
    for row, (label, _, _) in zip(rows, settings, strict=True):
        row["setting"] = label
    print(
        f"{args.customers} customers x {args.days} days, {args.epochs} epochs, "
        f"{os.cpu_count()} cores, torch threads per process: default / 1 / cores // 2"
    )
    print(f"{'setting':<20}{'wall s':>9}{'windows/s':>12}{'val AP':>9}{'load before':>13}")
    for r in rows:
        print(
            f"{r['setting']:<20}{r['wall_s']:>9.1f}{r['windows_per_s']:>12.0f}{r['val_ap']:>9.4f}{r['load_before']:>13.2f}"
        )
    one, one_thread, two = rows
    print(f"speed-up nproc 2 / nproc 1, whole command: {one['wall_s'] / two['wall_s']:.2f}x")
    print(f"speed-up nproc 2 / nproc 1, fit loop:      {two['windows_per_s'] / one['windows_per_s']:.2f}x")
    print(
        f"speed-up nproc 2 / one 1-thread process, fit loop: {two['windows_per_s'] / one_thread['windows_per_s']:.2f}x"
    )


if __name__ == "__main__":
    main()

"""Time spent in Python's cycle collector by one scoring process, CPython's thresholds vs fraudseq's.

Usage, from the repository root, after a ``python -m bench`` run has built the main zone under W:
python -m bench.collector --workdir W [--runs 3]

Each run is a fresh process that scores the main zone's last day once (``score_day``, DuckDB in a
temporary folder), as ``fraudseq score`` does: imports included. A ``gc.callbacks`` hook, set
before anything is imported, adds up the collector's pauses. The two settings alternate:
CPython's default thresholds (the reference) and ``pipeline.heap.BATCH_THRESHOLDS``, which
the CLI and the DAG tasks set. Prints medians of the collector seconds, the full collections,
the ``score_day`` wall and the peak RSS. Not a timed row of the table.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SETTINGS = ("default", "batch")


def child(workdir: Path, setting: str) -> dict[str, Any]:
    """One process: score the main zone's last day once and total the collector's pauses."""
    pauses: list[tuple[int, float]] = []
    started: list[float] = []

    def hook(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        else:
            pauses.append((info["generation"], time.perf_counter() - started.pop()))

    gc.callbacks.append(hook)
    if setting == "batch":
        from pipeline.heap import tune_collector

        tune_collector()
    import resource
    import shutil
    import tempfile

    from bench import setup
    from pipeline.score import score_day

    spec = json.loads((workdir / "spec.json").read_text())
    settings = setup.settings_for(Path(spec["zone"]) / "home")
    folder = tempfile.mkdtemp(dir=workdir)
    try:
        began = time.perf_counter()
        score_day(
            settings.model_copy(update={"scores_url": f"duckdb:///{folder}/scores.duckdb"}),
            setup.last_day(spec["zone_days"]),
        )
        wall = time.perf_counter() - began
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "collector_s": sum(p for _, p in pauses),
        "full_collections": sum(1 for g, _ in pauses if g == 2),
        "score_day_s": wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="the bench workdir (its spec.json)")
    parser.add_argument("--runs", type=int, default=3, help="processes per setting")
    parser.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.workdir, args.child)))
        return
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in SETTINGS}
    for _ in range(args.runs):
        for setting in SETTINGS:
            cmd = [
                sys.executable,
                "-m",
                "bench.collector",
                "--workdir",
                str(args.workdir),
                "--child",
                setting,
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[setting].append(json.loads(out.strip().splitlines()[-1]))
    ref = statistics.median(r["score_day_s"] for r in results["default"])
    print(f"one score_day per process, medians of {args.runs} (the settings alternate):")
    for setting, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"  {setting:8s} collector {med['collector_s']:.2f} s, {med['full_collections']:.0f} full collections,"
            f" score_day {med['score_day_s']:.2f} s ({med['score_day_s'] / ref:.2f}x the default),"
            f" peak {med['peak_rss_mb']:,.0f} MB"
        )


if __name__ == "__main__":
    main()

"""Where a daily shard's time goes: cProfile of the first shards of the daily zone's last day.

Usage, from the repository root, after a ``python -m bench --rows daily --workdir W`` has built
the daily zone under W: python -m bench.shard_profile --workdir W [--shards 32] [--profiled 4]

Scores shards 0 .. profiled-1 of ``--shards`` the way the daily run does (hashed days, the main
zone's champion, bf16 where ``auto`` picks it), prints each shard's wall time, then the
cumulative seconds per shard of the stages that matter (reading and featurising the history,
the split of older rows, the sort, the trailing sums, the feature matrix, the model). Each
shard's output file is removed once written. Not a timed row of the table: a breakdown to read
next to it.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
from pathlib import Path

from bench import setup

STAGES = {
    "build_event_table": "event table (read, interleave, features)",
    "_ranked_events": "  read and interleave",
    "split": "  split off the older rows (totals)",
    "sort": "  sort",
    "add_recent_counts": "  trailing sums",
    "feature_matrix": "  feature matrix",
    "logits_rows": "model (gather + forward)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="the bench workdir (its spec.json)")
    parser.add_argument("--shards", type=int, default=32)
    parser.add_argument("--profiled", type=int, default=4, help="how many shards to profile")
    args = parser.parse_args()

    from pipeline.shards import score_shard

    spec = json.loads((args.workdir / "spec.json").read_text())
    tracking = setup.settings_for(Path(spec["zone"]) / "home").tracking_uri
    settings = setup.settings_for(Path(spec["daily_zone"]) / "home", tracking=tracking)
    pinned, bundle, day, days, hashed = setup.last_day_inputs(settings)
    prof = cProfile.Profile()
    for k in range(args.profiled):
        began = time.perf_counter()
        out = prof.runcall(
            score_shard, settings, day, k, args.shards, pinned, bundle=bundle, days=days, hashed=hashed
        )
        print(f"shard {k} of {args.shards}: {time.perf_counter() - began:.2f} s")
        Path(out["path"]).unlink()  # the zone's home keeps no shard output of a profile
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    seconds = dict.fromkeys(STAGES, 0.0)
    for (path, _, func), (_, _, _, cum, _) in stats.items():
        # the frame sort only, not every function named "sort"
        if func in STAGES and (func != "sort" or path.endswith("polars/dataframe/frame.py")):
            seconds[func] += cum
    print(f"seconds per shard, mean of {args.profiled} (cProfile cumulative):")
    for func, label in STAGES.items():
        print(f"  {label:42s} {seconds[func] / args.profiled:6.2f}")


if __name__ == "__main__":
    main()

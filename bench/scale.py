"""Scale: how time, disk and memory grow with the size of the landing zone.

Usage, from the repository root:
    python -m bench.scale [--customers 6600,66000,330000,620000]

Each size is a 31-day zone built like the daily row's (``bench.setup.make_daily``: generated
in chunks of customers, about two logins per transaction, every day validated by
``validate_day``). For each zone the daily row then runs in its own process, exactly as
``python -m bench --rows daily`` runs it: validate the last day, then score it with its 30
days of history. Printed and written to ``docs/benchmarks/scale.md``: events in the zone, the
time to generate it and to validate all its days, the disk of its landing folder and
validated home, and the daily row's wall time and whole-process peak RSS. Scoring uses the daily row's
shards (32 at full size) unless ``FRAUDSEQ_SHARDS`` says otherwise. 6,600 customers make about 1M events, 620,000
about 94M (the daily target's day of 1M transactions and 2M logins, with its history).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_CUSTOMERS = "6600,66000,330000,620000"


def disk_mb(folder: Path) -> float:
    """Bytes of the regular files under ``folder`` (hard links counted once), in MB."""
    seen: set[int] = set()
    total = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_size
    return total / 1e6


def zone_events(landing: Path) -> dict[str, int]:
    import polars as pl

    return {
        log: int(pl.scan_parquet(landing / log / "*" / "*.parquet").select(pl.len()).collect().item())
        for log in ("transactions", "logins")
    }


def measure(customers: int, workdir: Path, base: dict[str, Any]) -> dict[str, Any]:
    """Build one zone (timed apart) and run the daily row on it in a child process."""
    from bench.__main__ import run_child, run_setup

    spec = dict(base, daily_customers=customers)
    spec["daily_zone"] = str(
        workdir / f"daily-{customers}x{spec['zone_days']}"
        f"-logins{spec['daily_login_rate_x10']}-chunk{spec['daily_chunk_customers']}"
    )
    spec_path = workdir / f"spec-scale-{customers}.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    zone = Path(spec["daily_zone"])
    reused = (zone / "landing" / "_truth" / "transactions.parquet").is_file()
    run_setup(spec_path, ["trained"], workdir / "machine.json")  # the champion, untimed (reused)
    began = time.perf_counter()
    run_setup(spec_path, ["daily_landing"], workdir / "machine.json")  # generation only
    generate_s = time.perf_counter() - began
    had_home = (zone / "home").is_dir()
    began = time.perf_counter()
    run_setup(spec_path, ["daily"], workdir / "machine.json")  # every day through validate_day
    validate_s = time.perf_counter() - began
    events = zone_events(zone / "landing")
    row = run_child("daily", spec_path, workdir)
    return {
        "customers": customers,
        "events": sum(events.values()),
        **events,
        "generate_s": None if reused else round(generate_s, 1),
        "validate_s": None if had_home else round(validate_s, 1),  # all days, GX included
        "landing_mb": round(disk_mb(zone / "landing"), 1),
        "home_mb": round(disk_mb(zone / "home"), 1),
        "daily": row,
    }


def _seconds(value: float | None) -> str:
    return "reused" if value is None else f"{value:.0f} s"


def render(results: list[dict[str, Any]], command: str, machine: dict[str, Any], days: int) -> str:
    details = [r["daily"].get("details", {}) for r in results]
    shards = ", ".join(sorted({str(d["shards"]) for d in details if "shards" in d})) or "?"
    amp = next((d["score_amp"] for d in details if "score_amp" in d), "0")
    bf16 = next((d["scored_in_bf16"] for d in details if "scored_in_bf16" in d), amp == "1")
    lines = [
        "# Scale",
        "",
        f"Reproduce: `{command}`, on {machine.get('cpu')}, {machine.get('cores')} cores. One run per size;"
        f" scoring in {shards} customer shards, in {'bf16 autocast' if bf16 else 'fp32'}"
        f" (`FRAUDSEQ_SHARDS`, `FRAUDSEQ_SCORE_AMP={amp}`).",
        "",
        f"Each zone is {days} days. *Generate*: chunked generation of the landing zone. *Validate every",
        "day*: all its days through `validate_day` (Great Expectations included), one after the other.",
        "Both are setup of the daily row, timed here. *Daily run*: the `daily` row of `python -m bench`,",
        f"which validates the last day again in a copy of the home and scores it with the {days - 1} days",
        "before it. *Reused* means the step found its output from an earlier run.",
        "",
        "| zone events | transactions / logins on the scored day | generate | validate every day | landing disk"
        " | home disk (validated)"
        " | daily run | peak RSS | s per 1M zone events |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        d = r["daily"]
        if "error" in d:
            lines.append(
                f"| {r['events']:,} | – | {_seconds(r['generate_s'])} | {_seconds(r['validate_s'])} | {r['landing_mb']:,.0f} MB |"
                f" {r['home_mb']:,.0f} MB | failed: {d['error'][:80]} | {d.get('peak_rss_mb', 0):,.0f} MB | – |"
            )
            continue
        det = d["details"]
        lines.append(
            f"| {r['events']:,} | {det['transactions']:,} / {det['logins']:,} | {_seconds(r['generate_s'])}"
            f" | {_seconds(r['validate_s'])}"
            f" | {r['landing_mb']:,.0f} MB | {r['home_mb']:,.0f} MB | {d['value']:.1f} s"
            f" | {d['peak_rss_mb']:,.0f} MB | {d['value'] / (r['events'] / 1e6):.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from bench.__main__ import SIZES

    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--customers", default=DEFAULT_CUSTOMERS, help="comma-separated zone sizes")
    parser.add_argument(
        "--quick", action="store_true", help="the quick sizes' champion and days (a smoke test)"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where zones are built and kept")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/scale.md"))
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    args = parser.parse_args(argv)
    size = "quick" if args.quick else "full"
    workdir = (args.workdir or Path(tempfile.gettempdir()) / f"fraudseq-bench-{size}").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    base = dict(SIZES[size], size=size, window=32, workdir=str(workdir), pg_admin="")
    base["zone"] = str(workdir / f"zone-{base['zone_customers']}x{base['zone_days']}")
    results = []
    for customers in (int(c) for c in args.customers.split(",") if c.strip()):
        print(f"scale: {customers} customers ...", flush=True)
        results.append(measure(customers, workdir, base))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "daily"}), flush=True)
    machine = json.loads((workdir / "machine.json").read_text())
    command = " ".join(["python -m bench.scale", *(argv if argv is not None else sys.argv[1:])])
    doc = render(results, command, machine, base["zone_days"])
    print(doc)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(doc)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "machine": machine}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

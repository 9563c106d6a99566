"""``python -m bench``: run every benchmark row, print a table, write docs/benchmarks/performance.md.

Each row runs in a child process (``python -m bench.rows``); its peak RSS is read from that
child's own resource usage (``os.wait4``), so it is the whole process's peak and nothing else's.
Inputs (landing zones, validated homes, a trained champion) are built once, untimed, under
``--workdir`` and reused by later runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import render_markdown, render_table

ALL_ROWS = (
    "generation",
    "validation",
    "windows",
    "training",
    "model",
    "model_bf16",
    "model_onnx",
    "e2e_duckdb",
    "e2e_postgres",
    "daily",
)
NEEDS = {  # what each row reads: a landing zone, a validated home, or a trained champion
    "generation": None,
    "model": None,
    "model_bf16": None,
    "model_onnx": None,
    "validation": "landing",
    "windows": "validated",
    "training": "validated",
    "e2e_duckdb": "trained",
    "e2e_postgres": "trained",
    "daily": "daily",
}

SIZES: dict[str, dict[str, Any]] = {
    "quick": {
        "runs": 3,
        "gen_customers": 300,
        "gen_days": 7,
        "zone_customers": 200,
        "zone_days": 28,
        "validation_days": 3,
        "train_windows": 2_000,
        "model_windows": 2_048,
        "model_batch": 1_024,
        "daily_customers": 200,
        "daily_chunk_customers": 100,
        "daily_login_rate_x10": 24,
        "daily_shards": 1,
        "daily_runs": 1,
        "acc_train_customers": 300,
        "acc_test_customers": 300,
        "acc_days": 14,
        "acc_context_days": 7,
        "acc_epochs": 1,
    },
    "full": {
        "runs": 3,
        "gen_customers": 20_000,
        "gen_days": 35,
        "zone_customers": 6_000,
        "zone_days": 31,
        "validation_days": 7,
        "train_windows": 10_000,
        "model_windows": 32_768,
        "model_batch": 1_024,  # pipeline.registry.SCORE_BATCH, what scoring uses on CPU
        "daily_customers": 620_000,  # about 1M transactions and 2M logins on the scored day
        "daily_chunk_customers": 50_000,
        "daily_login_rate_x10": 24,  # 2.4 plain logins per customer-day: about 2 logins per transaction
        # unless FRAUDSEQ_SHARDS is set. Memory is one shard's customers (4 GB target). Fewer shards
        # read fewer Parquet footers, but gain little: 2026-12-06, AVX2 host, back to back, 32 shards
        # 183.4 s and 2,768 MB, 20 shards 179.9 s and 3,578 MB (3,820 MB over three runs)
        "daily_shards": 32,
        "daily_runs": 1,
        "acc_train_customers": 3_000,
        "acc_test_customers": 10_000,
        "acc_days": 35,
        "acc_context_days": 14,
        "acc_epochs": 4,
    },
}


def run_child(name: str, spec_path: Path, workdir: Path) -> dict[str, Any]:
    """Run one row in its own process; its result plus the process's peak RSS and exit status."""
    out = workdir / f"row-{name}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.rows", name, "--spec", str(spec_path), "--out", str(out)]
    began = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    log = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak_mb = usage.ru_maxrss / 1024  # Linux reports KiB
    if proc.returncode != 0 or not out.is_file():
        last = [line for line in log.strip().splitlines() if line.strip()][-1:] or ["no output"]
        return {"name": name, "error": f"exit {proc.returncode}: {last[0][:300]}", "peak_rss_mb": peak_mb}
    res: dict[str, Any] = json.loads(out.read_text())
    res["peak_rss_mb"] = round(peak_mb, 1)
    res["process_wall_s"] = round(time.perf_counter() - began, 2)
    return res


def prepare(spec_path: Path, rows: list[str], info_path: Path) -> None:
    """Build the zones the rows need and describe the machine, in a child process (untimed).

    The parent stays a small process: on Linux a child's peak RSS starts from its parent's at
    fork, so a parent holding torch would inflate every row's figure.
    """
    run_setup(spec_path, sorted({NEEDS[r] for r in rows if NEEDS[r]}), info_path)


def run_setup(spec_path: Path, needs: list[str], info_path: Path) -> None:
    """``python -m bench.setup`` in a child process: build ``needs`` and describe the machine."""
    cmd = [sys.executable, "-m", "bench.setup", str(spec_path), str(info_path), *needs]
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--rows", default=",".join(ALL_ROWS), help=f"comma-separated subset of {ALL_ROWS}")
    parser.add_argument("--runs", type=int, default=None, help="repeats per row (median is reported)")
    parser.add_argument("--workdir", type=Path, default=None, help="where zones are built and kept")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/performance.md"))
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    parser.add_argument(
        "--pg-admin",
        default=os.environ.get(
            "FRAUDSEQ_BENCH_PG", "host=127.0.0.1 port=5432 user=postgres connect_timeout=3"
        ),
        help="libpq DSN of a server where the PostgreSQL row may create and drop a fresh database",
    )
    parser.add_argument(
        "--baseline", type=Path, default=None, help="a --json file of an earlier run to compare rows with"
    )
    parser.add_argument(
        "--notes",
        type=Path,
        default=Path(__file__).with_name("notes.md"),
        help="a markdown file whose text is added to the report (default: bench/notes.md)",
    )
    parser.add_argument(
        "--render-only", type=Path, default=None, help="rewrite --out from a --json file of a finished run"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=INT", help="override one size")
    args = parser.parse_args(argv)

    baseline = json.loads(args.baseline.read_text())["rows"] if args.baseline else None
    notes = args.notes.read_text() if args.notes and args.notes.is_file() else ""
    if args.render_only:
        done = json.loads(args.render_only.read_text())
        args.out.write_text(
            render_markdown(done["rows"], done["spec"], done["machine"], done["command"], baseline, notes)
        )
        print(render_table(done["rows"]))
        return 0
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ALL_ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {ALL_ROWS}")
    size = "quick" if args.quick else "full"
    spec: dict[str, Any] = dict(SIZES[size])
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in spec:
            parser.error(f"--set {item}: unknown size {key!r}")
        spec[key] = int(value)
    if args.runs is not None:
        spec["runs"] = args.runs
    workdir = (args.workdir or Path(tempfile.gettempdir()) / f"fraudseq-bench-{size}").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    spec.update(
        size=size,
        window=32,
        workdir=str(workdir),
        zone=str(workdir / f"zone-{spec['zone_customers']}x{spec['zone_days']}"),
        daily_zone=str(
            workdir / f"daily-{spec['daily_customers']}x{spec['zone_days']}"
            f"-logins{spec['daily_login_rate_x10']}-chunk{spec['daily_chunk_customers']}"
        ),
        pg_admin=args.pg_admin,
    )
    spec_path = workdir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))

    info_path = workdir / "machine.json"
    print(f"bench ({size}): preparing inputs under {workdir}", flush=True)
    prepare(spec_path, rows, info_path)
    info = json.loads(info_path.read_text())
    info["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
    print(f"on {info['cpu']}, {info['cores']} cores, torch {info['torch_threads']} threads", flush=True)
    results = []
    for name in rows:
        print(f"  running {name} ...", flush=True)
        results.append(run_child(name, spec_path, workdir))
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    command = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
    print(render_table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render_markdown(results, spec, info, command, baseline, notes))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"spec": spec, "machine": info, "command": command, "rows": results}, indent=2, default=str
            )
        )
    print(f"wrote {args.out}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

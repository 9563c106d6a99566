"""Turn benchmark rows into the printed table and docs/benchmarks/performance.md."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

DAILY_FULL_TX = 1_000_000
MB_LIMIT = 4096


def _ratio(r: dict[str, Any]) -> float | None:
    if not r.get("ref_value") or r.get("unit") != r.get("ref_unit"):
        return None
    return float(r["value"]) / float(r["ref_value"])


def _daily(r: dict[str, Any]) -> tuple[bool | None, str]:
    full = r["details"].get("transactions", 0) >= DAILY_FULL_TX
    ok = r["value"] < 180 and r["peak_rss_mb"] < MB_LIMIT
    if not full:
        return None, f"not run at full size ({r['details'].get('transactions', 0):,} tx, not 1M)"
    return ok, ""


# name -> (target text, check) where check returns (met or None when not judged, note)
TARGETS: dict[str, tuple[str, Callable[[dict[str, Any]], tuple[bool | None, str]]]] = {
    "windows": ("≥ 20× pandas", lambda r: ((_ratio(r) or 0) >= 20, "")),
    "model": ("≥ 50% of matmul GFLOP/s", lambda r: ((_ratio(r) or 0) >= 0.5, "")),
    "e2e_duckdb": ("≥ 30,000 tx/s", lambda r: (r["value"] >= 30_000, "")),
    "e2e_postgres": ("≥ 30,000 tx/s", lambda r: (r["value"] >= 30_000, "")),
    "daily": ("1M tx + 2M logins: < 180 s, < 4 GB", _daily),
}


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    if unit == "s":
        return f"{value:.1f} s"
    if abs(value) >= 1000:
        return f"{value:,.0f} {unit}".strip()
    return f"{value:.3g} {unit}".strip()


def status(r: dict[str, Any]) -> str:
    if "error" in r:
        return "not run"
    if r["name"] not in TARGETS:
        return ""
    met, note = TARGETS[r["name"]][1](r)
    if met is None:
        return f"not judged: {note}"
    return "met" if met else "not met"


def cells(r: dict[str, Any]) -> list[str]:
    if "error" in r:
        return [r["name"], "error", r["error"][:80], "", "", "", "not run"]
    ratio = _ratio(r)
    target = TARGETS[r["name"]][0] if r["name"] in TARGETS else ""
    return [
        r["label"],
        fmt(r["value"], r["unit"]),
        f"{fmt(r['ref_value'], r['ref_unit'])} ({r['reference']})",
        f"{ratio:.2f}×" if ratio is not None else "–",
        f"{r['peak_rss_mb']:,.0f} MB",
        target,
        status(r),
    ]


HEADER = ["row", "result (median)", "reference, same run", "ratio", "peak RSS", "target", "status"]


def render_table(results: list[dict[str, Any]]) -> str:
    rows = [HEADER, *[cells(r) for r in results]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in cells(r)) + " |" for r in results]
    return "\n".join(lines)


def render_markdown(
    results: list[dict[str, Any]], spec: dict[str, Any], machine: dict[str, Any], command: str
) -> str:
    judged = [r for r in results if r.get("name") in TARGETS]
    summary = ", ".join(f"{r['name']}: {status(r)}" for r in judged) or "no target rows run"
    out = [
        "# Performance",
        "",
        f"Measured with `{command}` ({spec['size']} sizes). Every figure is the median of "
        f"{spec['runs']} runs, next to a reference measured in the same process; peak RSS is the "
        "whole row process's (`os.wait4` resource usage of a child that runs only that row).",
        "",
        "## Table",
        "",
        markdown_table(results),
        "",
        f"Targets: {summary}.",
        "",
        "## Machine",
        "",
        "```json",
        json.dumps(machine, indent=2),
        "```",
        "",
        "The machine is shared: the load average above counts other jobs running at the same "
        "time, which slow every figure and its reference alike; ratios are the steadier numbers.",
        "",
        "## Details per row",
        "",
    ]
    for r in results:
        out.append(f"### {r.get('label', r['name'])}")
        out.append("")
        if "error" in r:
            out += [f"Not run: `{r['error']}`", ""]
            continue
        out.append(f"- runs (s): {r['run_seconds']}; row process wall {r.get('process_wall_s', '?')} s")
        for key, value in r["details"].items():
            out.append(f"- {key}: `{json.dumps(value, default=str)}`")
        out.append("")
    out += [
        "## Sizes",
        "",
        "```json",
        json.dumps({k: v for k, v in spec.items() if k not in ("pg_admin",)}, indent=2),
        "```",
        "",
    ]
    return "\n".join(out)

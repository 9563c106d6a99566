"""Population stability of scores and features against the training window.

At training, 10 quantile bins are fixed for the calibrated score (on the validation
window, the matured days the calibrator was fitted on) and for each per-event feature
(on the transactions of the training window). They travel inside the model bundle, so a
scored day is always compared with the window of the model that scored it.

PSI = sum over bins of (actual - expected) * ln(actual / expected). Values above
``FRAUDSEQ_DRIFT_THRESHOLD`` (default 0.2, the usual "significant shift" line) warn.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

N_BINS = 10
SCORE = "risk_score"
# Empty bins would make PSI infinite; this floor is the usual practice (0.01%).
_FLOOR = 1e-4


def quantile_edges(values: np.ndarray, n_bins: int = N_BINS) -> list[float]:
    """Inner bin edges at the 1/n..(n-1)/n quantiles, duplicates merged (ties, flags)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return []
    qs = np.quantile(v, np.arange(1, n_bins) / n_bins, method="inverted_cdf")  # edges are data values
    return [float(x) for x in np.unique(qs)]


def bin_shares(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Share of ``values`` in each bin (-inf, e1], (e1, e2], ..., (ek, inf)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    counts = np.bincount(np.searchsorted(np.asarray(edges), v, side="left"), minlength=len(edges) + 1)
    return counts / max(v.size, 1)


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), _FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), _FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def build_reference(
    features: np.ndarray, feature_names: Sequence[str], scores: np.ndarray, n_bins: int = N_BINS
) -> dict[str, Any]:
    """Bins and expected shares of the score and of each feature column ((N, F) raw rows)."""
    columns = {SCORE: np.asarray(scores)} | {
        name: features[:, j] for j, name in enumerate(feature_names[: features.shape[1]])
    }
    ref: dict[str, Any] = {"n_bins": n_bins, "n_rows": int(features.shape[0]), "columns": {}}
    for name, values in columns.items():
        edges = quantile_edges(values, n_bins)
        ref["columns"][name] = {"edges": edges, "expected": bin_shares(values, edges).round(6).tolist()}
    return ref


def day_drift(
    reference: dict[str, Any], features: np.ndarray, feature_names: Sequence[str], scores: np.ndarray
) -> dict[str, float]:
    """PSI of one day's score and features against ``reference``; columns it lacks are skipped."""
    columns = {SCORE: np.asarray(scores)} | {
        name: features[:, j] for j, name in enumerate(feature_names[: features.shape[1]])
    }
    out: dict[str, float] = {}
    for name, values in columns.items():
        ref = reference["columns"].get(name)
        if ref is None or len(values) == 0:
            continue
        out[name] = round(psi(ref["expected"], bin_shares(values, ref["edges"])), 6)
    return out


def summarise(day: date, psi_by_column: dict[str, float], threshold: float, n_rows: int) -> dict[str, Any]:
    """The stored drift record of a day: every PSI, the worst, and what crossed ``threshold``."""
    worst = max(psi_by_column.items(), key=lambda kv: kv[1], default=(None, 0.0))
    drifted = sorted((k for k, v in psi_by_column.items() if v > threshold), key=lambda k: -psi_by_column[k])
    return {
        "date": day.isoformat(),
        "threshold": threshold,
        "n_rows": n_rows,
        "score_psi": psi_by_column.get(SCORE),
        "max_psi": worst[1],
        "max_psi_column": worst[0],
        "drifted": drifted,
        "psi": psi_by_column,
    }


def drift_path(reports_dir: Path, day: date) -> Path:
    return reports_dir / "drift" / f"date={day.isoformat()}.json"


def write_drift(reports_dir: Path, record: dict[str, Any]) -> Path:
    """Write a day's drift record atomically (a re-run replaces it)."""
    path = drift_path(reports_dir, date.fromisoformat(record["date"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)
    return path


def latest_drift(reports_dir: Path) -> dict[str, Any] | None:
    """The most recent day's drift record, or None."""
    files = sorted((reports_dir / "drift").glob("date=*.json"))
    return json.loads(files[-1].read_text()) if files else None


def warn_if_drifted(record: dict[str, Any]) -> None:
    """A WARNING line (visible in the Airflow task log and on stderr) naming what drifted."""
    if record["drifted"]:
        top = ", ".join(f"{k} {record['psi'][k]:.3f}" for k in record["drifted"][:5])
        log.warning(
            "drift on %s: PSI above %.2f for %d column(s): %s",
            record["date"],
            record["threshold"],
            len(record["drifted"]),
            top,
        )

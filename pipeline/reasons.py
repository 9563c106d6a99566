"""Why an alert fired: occlusion attribution over its window, turned into readable sentences.

For each alert we remove one unit of the window at a time (the events before it slide up,
as if it never happened) and re-score. The drop in the calibrated score is that unit's
weight. A unit is one transaction, or one login *session*: consecutive account events
from the same device a few minutes apart (failed logins, the login, a profile change).
Removing a session whole matters: its events carry the same signal (a new device), so
removing any one of them alone barely moves the score and single-event occlusion would
spread the credit thin. Only alerts are explained, so scoring stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from pipeline.sequences import EventData

SESSION_GAP_S = 30 * 60  # account events further apart than this are separate sessions
_CHANNEL_WORDS = {
    "pos": "card payment",
    "ecom": "online payment",
    "transfer": "transfer",
    "atm": "ATM withdrawal",
}


def occlusion_weights(
    windows: np.ndarray,
    lengths: np.ndarray,
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """(N, W) score drop when each position's unit is removed; 0 for padding.

    ``groups`` (N, W) gives each real position a unit id (-1 for padding); positions of one
    unit are removed together and share its weight. Without it every event is its own unit.
    """
    n, w, f = windows.shape
    real = np.arange(w)[None, :] >= (w - lengths)[:, None]  # (N, W)
    if groups is None:
        groups = np.where(real, np.arange(w)[None, :], -1)
    base = predict(windows, lengths)  # (N,)
    variants, var_len, owner = [], [], []
    for i in range(n):
        for g in np.unique(groups[i][real[i]]):
            kept = windows[i, real[i] & (groups[i] != g)]  # (L, F)
            v = np.zeros((w, f), dtype=windows.dtype)
            if len(kept):
                v[w - len(kept) :] = kept  # right-aligned, padded on the left
            variants.append(v)
            var_len.append(max(len(kept), 1))
            owner.append((i, g))
    weights = np.zeros((n, w))
    if not variants:
        return weights
    scores = predict(np.stack(variants), np.asarray(var_len, dtype=np.int64))  # (V,)
    for (i, g), s in zip(owner, scores, strict=True):
        weights[i, groups[i] == g] = base[i] - s
    return np.where(real, weights, 0.0)


def session_groups(events: pl.DataFrame, window_rows: np.ndarray) -> np.ndarray:
    """(N, W) unit ids: each transaction alone; same-device account events close in time together."""
    source = events["source"].to_numpy()
    device = events["device_id"].to_numpy()
    seconds = events["event_time"].dt.epoch("s").to_numpy()
    groups = np.full(window_rows.shape, -1, dtype=np.int64)
    for i, rows in enumerate(window_rows):
        gid, prev = -1, -1
        for p, r in enumerate(rows):
            if r < 0:
                continue
            same_session = (
                prev >= 0
                and source[r] == 0
                and source[prev] == 0
                and device[r] is not None
                and device[r] == device[prev]
                and seconds[r] - seconds[prev] <= SESSION_GAP_S
            )
            gid = gid if same_session else gid + 1
            groups[i, p] = gid
            prev = r
    return groups


def _time_text(seconds: float) -> str:
    minutes = seconds / 60.0
    if minutes < 1:
        return "less than a minute"
    if minutes < 90:
        return f"{minutes:.0f} minute{'s' if round(minutes) != 1 else ''}"
    if minutes < 48 * 60:
        return f"{minutes / 60:.0f} hours"
    return f"{minutes / 1440:.0f} days"


def describe_event(event: dict, target: dict, median_amount: float | None) -> tuple[str, str]:
    """(kind, sentence) for one window event, relative to the scored transaction."""
    gap = (target["event_time"] - event["event_time"]).total_seconds()
    is_target = event["event_id"] == target["event_id"]
    when = "" if is_target else f", {_time_text(gap)} before"
    flags = []
    if event.get("new_device"):
        flags.append("a new device")
    if event.get("new_country") and event.get("country"):
        flags.append(f"a new country ({event['country']})")
    place = f" in {event['country']}" if event.get("country") else ""
    if event["source"] == 0:
        what = event["kind"].replace("_", " ")
        extra = f" from {' and '.join(flags)}" if flags else place
        return event["kind"], f"{what}{extra}{when}"
    amount = float(event["amount"] or 0.0)
    words = _CHANNEL_WORDS.get(event["channel"], f"{event['channel']} payment")
    text = f"{'this ' if is_target else ''}{words} of {amount:,.2f} {event.get('currency') or ''}".rstrip()
    if not flags:
        text += place
    if median_amount and median_amount > 0 and amount >= 3 * median_amount:
        text += f", amount {amount / median_amount:.0f}× this customer's median"
    if event.get("new_merchant"):
        text += ", to a new " + ("payee" if event["channel"] == "transfer" else "merchant")
    if flags:
        text += f", from {' and '.join(flags)}"
    return f"tx_{event['channel']}", f"{text}{when}"


def _session_text(members: list[dict], rep_kind: str) -> str:
    """', in a session with 2 login failures and a profile change' for the other events of a session."""
    counts: dict[str, int] = {}
    for m in members:
        counts[m["kind"]] = counts.get(m["kind"], 0) + 1
    parts = []
    for kind, n in counts.items():
        words = kind.replace("_", " ")
        if n > 1:
            plural = words + ("es" if words.endswith("s") else "s")
            parts.append(f"{n} {'more ' if kind == rep_kind else ''}{plural}")
        else:
            parts.append(f"{'another' if kind == rep_kind else 'a'} {words}")
    return f", in a session with {' and '.join(parts)}" if parts else ""


def reasons_json(
    events: pl.DataFrame,
    window_rows: np.ndarray,
    weights: np.ndarray,
    median_amount: float | None,
    top: int = 3,
    groups: np.ndarray | None = None,
) -> str:
    """JSON list of up to ``top`` {event_id, kind, text, weight} for one alert, biggest first.

    A login session is reported under its successful login (else its last event), with the
    session's new-device and new-country flags and its other events named in the text.
    Units whose removal raises the score are not reasons; when none lowers it (the whole
    window, not one event, drives the score) the most influential one is still named, with
    its weight, so that every alert carries at least one reason.
    """
    if groups is None:
        groups = np.where(window_rows >= 0, np.arange(len(window_rows)), -1)
    target = events.row(int(window_rows[-1]), named=True)
    units: list[tuple[float, list[int]]] = []
    for g in np.unique(groups[groups >= 0]):
        pos = np.flatnonzero(groups == g)
        units.append((float(weights[pos[0]]), [int(window_rows[p]) for p in pos]))
    units.sort(key=lambda u: (-u[0], -u[1][-1]))
    out: list[dict[str, Any]] = []
    for weight, rows in units[:top]:
        if weight <= 0 and out:
            break
        members = [events.row(r, named=True) for r in rows]
        rep = next((m for m in members if m["kind"] == "login_success"), members[-1])
        merged = dict(rep)
        if len(members) > 1:
            merged["new_device"] = max(m.get("new_device") or 0 for m in members)
            merged["new_country"] = max(
                (m.get("new_country") or 0) for m in members if m.get("country") == rep.get("country")
            )
        kind, text = describe_event(merged, target, median_amount)
        text += _session_text([m for m in members if m is not rep], rep["kind"])
        out.append({"event_id": rep["event_id"], "kind": kind, "text": text, "weight": round(weight, 4)})
    return json.dumps(out, ensure_ascii=False)


def explain_alerts(
    data: EventData,
    rows: np.ndarray,
    windows: np.ndarray,
    lengths: np.ndarray,
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    top: int = 3,
) -> list[str]:
    """Reasons JSON of each alerted transaction (``rows``: its event-table rows, windows: its windows)."""
    if len(rows) == 0:
        return []
    w = windows.shape[1]
    real = np.arange(w)[None, :] >= (w - lengths)[:, None]  # (N, W)
    window_rows = np.where(real, rows[:, None] + np.arange(-w + 1, 1)[None, :], -1)  # (N, W)
    groups = session_groups(data.events, window_rows)
    weights = occlusion_weights(windows, lengths, predict, groups)
    medians = customer_median_amounts(data, rows)
    return [
        reasons_json(data.events, window_rows[k], weights[k], medians[k], top, groups[k])
        for k in range(len(rows))
    ]


def customer_median_amounts(data: EventData, rows: np.ndarray) -> list[float | None]:
    """Median of each row's customer's earlier transaction amounts (for reason texts)."""
    out: list[float | None] = []
    amounts = data.events["amount"].to_numpy()
    source = data.events["source"].to_numpy()
    for r in rows:
        s = data.starts[r]
        prev = amounts[s:r][source[s:r] == 1]
        out.append(float(np.median(prev)) if len(prev) else None)
    return out

"""Why an alert fired: occlusion attribution over its window, turned into readable sentences.

For each alert we remove one event at a time from the window (the events before it slide
up, as if it never happened) and re-score. The drop in the calibrated score is that
event's weight. Only alerts are explained, so scoring stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import polars as pl


def occlusion_weights(
    windows: np.ndarray, lengths: np.ndarray, predict: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    """(N, W) score drop when each real event is removed; 0 for padding.

    Removing the transaction itself (position W-1) is measured by replacing it with its
    predecessor context only: the weight is the score minus the score of the window that
    ends one event earlier, which is what "this transaction, not the history" means.
    """
    n, w, f = windows.shape
    base = predict(windows, lengths)  # (N,)
    variants = np.zeros((n, w, w, f), dtype=np.float32)  # (N, P, W, F): P = removed position
    var_len = np.zeros((n, w), dtype=np.int64)
    for p in range(w):
        # drop position p, keep the rest right-aligned, pad one more on the left
        kept = np.concatenate([windows[:, :p], windows[:, p + 1 :]], axis=1)  # (N, W-1, F)
        variants[:, p, 1:] = kept
        var_len[:, p] = np.maximum(lengths - 1, 1)
    scores = predict(variants.reshape(n * w, w, f), var_len.reshape(-1)).reshape(n, w)
    weights = base[:, None] - scores  # (N, W)
    real = np.arange(w)[None, :] >= (w - lengths)[:, None]
    return np.where(real, weights, 0.0)


def _minutes_text(minutes: float) -> str:
    if minutes < 1:
        return "less than a minute"
    if minutes < 90:
        return f"{minutes:.0f} minutes"
    if minutes < 48 * 60:
        return f"{minutes / 60:.0f} hours"
    return f"{minutes / 1440:.0f} days"


def describe_event(event: dict, target: dict, median_amount: float | None) -> tuple[str, str]:
    """(kind, sentence) for one window event, relative to the scored transaction."""
    gap = (target["event_time"] - event["event_time"]).total_seconds() / 60.0
    when = "this transaction" if event["event_id"] == target["event_id"] else f"{_minutes_text(gap)} before"
    flags = []
    if event.get("new_device"):
        flags.append("a new device")
    if event.get("new_country") and event.get("country"):
        flags.append(f"a new country ({event['country']})")
    place = f" in {event['country']}" if event.get("country") else ""
    if event["source"] == 0:
        what = event["kind"].replace("_", " ")
        extra = f" from {' and '.join(flags)}" if flags else place
        return event["kind"], f"{what}{extra}, {when}"
    amount = float(event["amount"] or 0.0)
    text = f"{event['channel']} payment of {amount:,.2f} {event.get('currency') or ''}".strip()
    if median_amount and median_amount > 0 and amount >= 3 * median_amount:
        text += f", {amount / median_amount:.0f}x this customer's median"
    if event.get("new_merchant"):
        text += ", to a new " + ("payee" if event["channel"] == "transfer" else "merchant")
    if flags:
        text += f", from {' and '.join(flags)}"
    return f"tx_{event['channel']}", f"{text}{'' if when == 'this transaction' else ', ' + when}"


def reasons_json(
    events: pl.DataFrame,
    window_rows: np.ndarray,
    weights: np.ndarray,
    median_amount: float | None,
    top: int = 3,
) -> str:
    """JSON list of up to ``top`` {event_id, kind, text, weight} for one alert, biggest first.

    Events whose removal raises the score are not reasons. When no event's removal lowers
    it (the whole window, not one event, drives the score) the single most influential
    event is still named, with its weight, so that every alert carries at least one reason.
    """
    real = window_rows >= 0
    order = [int(p) for p in np.argsort(-weights, kind="stable") if real[p]]
    target = events.row(int(window_rows[-1]), named=True)
    out = []
    for rank, p in enumerate(order[:top]):
        if rank > 0 and weights[p] <= 0:
            break
        event = events.row(int(window_rows[p]), named=True)
        kind, text = describe_event(event, target, median_amount)
        out.append(
            {"event_id": event["event_id"], "kind": kind, "text": text, "weight": round(float(weights[p]), 4)}
        )
    return json.dumps(out)

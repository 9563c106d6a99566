"""Metrics on hand-made cases whose answers are worked out in the comments."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import polars as pl
import pytest

from pipeline.metrics import (
    auc_roc,
    average_precision,
    card_precision_at_k,
    drop_known_compromised,
    expected_calibration_error,
    precision_recall_at_k,
    recall_at_fpr,
)


def test_auc_and_average_precision_by_hand() -> None:
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    # pairs (pos, neg): (0.35 > 0.1), (0.35 < 0.4), (0.8 > 0.1), (0.8 > 0.4) -> 3 of 4
    assert auc_roc(y, s) == pytest.approx(0.75)
    # ranked: 0.8(1) 0.4(0) 0.35(1) 0.1(0); AP = 0.5 * 1/1 + 0.5 * 2/3
    assert average_precision(y, s) == pytest.approx(0.5 + 1 / 3)


def test_single_class_metrics_are_nan() -> None:
    y = np.zeros(4, dtype=int)
    s = np.array([0.1, 0.2, 0.3, 0.4])
    assert math.isnan(auc_roc(y, s))
    assert math.isnan(average_precision(y, s))
    assert math.isnan(recall_at_fpr(y, s))


def test_recall_at_fpr_by_hand() -> None:
    pos = [0.9, 0.8, 0.3, 0.1]
    neg = [0.85, 0.5, 0.45, 0.4, 0.35, 0.25, 0.2, 0.15, 0.05, 0.02]
    y = np.array([1] * 4 + [0] * 10)
    s = np.array(pos + neg)
    assert recall_at_fpr(y, s, fpr=0.0) == pytest.approx(0.25)  # only 0.9 clears 0.85
    assert recall_at_fpr(y, s, fpr=0.1) == pytest.approx(0.5)  # one negative (0.85) allowed
    assert recall_at_fpr(y, s, fpr=0.5) == pytest.approx(0.75)  # threshold 0.3, 5 negatives above
    assert recall_at_fpr(y, s, fpr=1.0) == pytest.approx(1.0)


def test_recall_at_fpr_does_not_split_ties() -> None:
    # the fraud ties with the genuine window: flagging it flags both, FPR 1 > 0
    assert recall_at_fpr(np.array([1, 0]), np.array([0.5, 0.5]), fpr=0.0) == 0.0


def test_precision_recall_at_k_by_hand() -> None:
    y = np.array([0, 1, 1, 0, 1])
    s = np.array([0.9, 0.8, 0.1, 0.7, 0.6])
    assert precision_recall_at_k(y, s, 2) == pytest.approx((0.5, 1 / 3))  # picks 0.9(0), 0.8(1)
    assert precision_recall_at_k(y, s, 4) == pytest.approx((0.5, 2 / 3))  # adds 0.7(0), 0.6(1)
    assert precision_recall_at_k(y, s, 10) == pytest.approx((0.6, 1.0))  # all five alerted


def test_precision_at_k_breaks_ties_by_position() -> None:
    assert precision_recall_at_k(np.array([0, 1, 0]), np.array([0.5, 0.5, 0.5]), 1)[0] == 0.0


def card_frame(rows: list[tuple[str, int, float, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["customer_id", "day", "score", "is_fraud"], orient="row")


def test_card_precision_at_k_follows_the_handbook() -> None:
    rows = [
        # day 1: customer maxima A .9 (fraud), B .8, C .7 (fraud on its low-scored tx), D .2 (fraud)
        ("A", 1, 0.9, 1),
        ("A", 1, 0.1, 0),
        ("B", 1, 0.8, 0),
        ("C", 1, 0.7, 0),
        ("C", 1, 0.05, 1),
        ("D", 1, 0.2, 1),
        # day 2: A was caught on day 1 and must go; B was a false alarm on day 1 and must stay
        ("A", 2, 0.95, 0),
        ("B", 2, 0.99, 1),
        ("C", 2, 0.6, 1),
        ("D", 2, 0.5, 0),
        # day 3: only one customer left, still divided by k
        ("E", 3, 0.1, 1),
    ]
    df = card_frame(rows[::-1])  # input order must not matter
    mean, per_day = card_precision_at_k(df, k=2)
    # day 1: top 2 = A(fraud), B -> 1/2; day 2 without A: B(fraud), C(fraud) -> 2/2; day 3: 1/2
    assert per_day == pytest.approx([0.5, 1.0, 0.5])
    assert mean == pytest.approx(2 / 3)


def test_card_precision_keeps_customers_caught_without_fraud_out_of_the_removal() -> None:
    # wrongly removing every top-k customer (not just true positives) would give 0 on day 2
    df = card_frame([("A", 1, 0.9, 0), ("B", 1, 0.1, 1), ("A", 2, 0.9, 1), ("B", 2, 0.1, 0)])
    assert card_precision_at_k(df, k=1)[1] == [0.0, 1.0]


def test_card_precision_breaks_score_ties_by_customer_id() -> None:
    df = card_frame([("b", 1, 0.5, 0), ("a", 1, 0.5, 1)])
    assert card_precision_at_k(df, k=1) == (1.0, [1.0])


def test_drop_known_compromised_with_dates() -> None:
    d = date
    df = pl.DataFrame(
        {
            "customer_id": ["A", "A", "A", "A", "B", "C", "C", "C", "C"],
            "day": [
                d(2018, 8, 1),  # A's fraud itself: gap 0, kept
                d(2018, 8, 5),  # gap 4: not known yet
                d(2018, 8, 8),  # gap 7: d - 8 = 07-31 < 08-01, kept
                d(2018, 8, 9),  # gap 8: d - 8 = 08-01, known -> dropped
                d(2018, 8, 20),  # B has no fraud: kept
                d(2018, 7, 20),  # before C's first fraud: kept
                d(2018, 7, 30),  # C's first fraud
                d(2018, 8, 7),  # gap 8 from 07-30 -> dropped
                d(2018, 8, 10),  # C's second fraud, gap 11 from the first -> dropped
            ],
            "is_fraud": [1, 0, 0, 0, 0, 0, 1, 0, 1],
            "event": list(range(9)),
        }
    )
    kept = drop_known_compromised(df, delay_days=7)
    assert kept["event"].to_list() == [0, 1, 2, 4, 5, 6]
    assert kept.columns == df.columns


def test_drop_known_compromised_with_day_numbers_and_no_delay() -> None:
    df = pl.DataFrame({"customer_id": ["A", "A", "A"], "day": [3, 3, 4], "is_fraud": [0, 1, 0]})
    # with no delay a fraud is known the next day
    assert drop_known_compromised(df, delay_days=0)["day"].to_list() == [3, 3]
    assert drop_known_compromised(df, delay_days=1)["day"].to_list() == [3, 3, 4]


def test_ece_by_hand() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.9])
    # bins {.1,.2} rate 0 -> |0-.15|; {.6,.9} rate 1 -> |1-.75|; each half the mass
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.5 * 0.15 + 0.5 * 0.25)
    assert expected_calibration_error(y, p, n_bins=1) == pytest.approx(0.05)  # |0.5 - 0.45|
    assert expected_calibration_error(y, p, n_bins=4) == pytest.approx((0.1 + 0.2 + 0.4 + 0.1) / 4)


def test_ece_equal_mass_bins_of_unequal_size() -> None:
    y = np.array([1, 0, 0, 1, 1])  # given out of order: sorting by p must carry y along
    p = np.array([0.8, 0.1, 0.3, 0.2, 0.9])
    # sorted p .1 .2 .3 | .8 .9 with y 0 1 0 | 1 1: 3/5 * |1/3 - .2| + 2/5 * |1 - .85|
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.6 * (1 / 3 - 0.2) + 0.4 * 0.15)


def test_ece_is_zero_when_calibrated() -> None:
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0]), n_bins=2) == 0.0

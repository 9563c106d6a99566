"""Calibrators: they fix the numbers and never the order."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit

from pipeline.calibration import PlattCalibrator, TemperatureCalibrator, calibrator_from_dict
from pipeline.metrics import average_precision, expected_calibration_error


def miscalibrated(n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True logits, labels drawn from them, and a model's logits that are 2x too sharp and +3 shifted
    (what training with a large pos_weight does)."""
    rng = np.random.default_rng(seed)
    true = rng.normal(-3.0, 1.5, size=n)
    y = (rng.random(n) < expit(true)).astype(np.int64)
    return true, y, 2.0 * true + 3.0


def test_platt_recovers_the_distortion_and_lowers_ece() -> None:
    _, y, logits = miscalibrated()
    cal = PlattCalibrator().fit(logits, y)
    assert cal.a == pytest.approx(0.5, abs=0.05)  # undoes the 2x
    assert cal.b == pytest.approx(-1.5, abs=0.2)  # and the +3
    before = expected_calibration_error(y, expit(logits))
    after = expected_calibration_error(y, cal.transform(logits))
    assert before > 0.1
    assert after < 0.02


@pytest.mark.parametrize("calibrator", [PlattCalibrator(), TemperatureCalibrator()])
def test_calibration_keeps_ranks_and_average_precision(calibrator: PlattCalibrator) -> None:
    _, y, logits = miscalibrated(n=3000, seed=1)
    p = calibrator.fit(logits, y).transform(logits)
    np.testing.assert_array_equal(np.argsort(p, kind="stable"), np.argsort(logits, kind="stable"))
    assert average_precision(y, p) == pytest.approx(average_precision(y, logits), abs=1e-12)


def test_temperature_recovers_an_overconfident_scale() -> None:
    rng = np.random.default_rng(2)
    true = rng.normal(0.0, 1.0, size=20_000)
    y = (rng.random(true.size) < expit(true)).astype(np.int64)
    cal = TemperatureCalibrator().fit(2.5 * true, y)
    assert cal.temperature == pytest.approx(2.5, rel=0.1)
    assert expected_calibration_error(y, cal.transform(2.5 * true)) < expected_calibration_error(
        y, expit(2.5 * true)
    )


def test_platt_falls_back_to_identity_rather_than_reverse_the_ranking() -> None:
    _, y, logits = miscalibrated(n=2000, seed=3)
    cal = PlattCalibrator().fit(-logits, y)  # a model that ranks backwards
    assert (cal.a, cal.b, cal.fallback) == (1.0, 0.0, "identity")
    assert np.all(np.diff(cal.transform(np.array([-2.0, 0.0, 2.0]))) > 0)


def test_platt_stays_finite_on_separable_data() -> None:
    logits = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    y = np.array([0, 0, 0, 1, 1, 1])
    cal = PlattCalibrator().fit(logits, y)
    assert 0 < cal.a < 50 and np.isfinite(cal.b)
    p = cal.transform(logits)
    assert p[:3].max() < 0.5 < p[3:].min()


@pytest.mark.parametrize("calibrator", [PlattCalibrator(), TemperatureCalibrator()])
def test_dict_round_trip_through_json(calibrator: PlattCalibrator) -> None:
    _, y, logits = miscalibrated(n=2000, seed=4)
    calibrator.fit(logits, y)
    stored = json.loads(json.dumps(calibrator.to_dict()))
    rebuilt = calibrator_from_dict(stored)
    assert type(rebuilt) is type(calibrator)
    np.testing.assert_array_equal(rebuilt.transform(logits), calibrator.transform(logits))


def test_from_dict_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="unknown calibrator"):
        calibrator_from_dict({"kind": "isotonic"})
    with pytest.raises(ValueError, match="platt"):
        PlattCalibrator.from_dict({"kind": "temperature", "temperature": 1.0})

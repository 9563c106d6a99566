"""Fitting on tiny synthetic windows: determinism, early stopping, batching and losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.fit import (
    FitConfig,
    FitResult,
    default_pos_weight,
    epoch_sample,
    fit_sequence_model,
    focal_loss,
    length_bucketed_batches,
    predict_logits,
)
from pipeline.metrics import average_precision
from pipeline.model import SequenceModelConfig

T, F = 6, 3
CPU = torch.device("cpu")


def windows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left-padded windows; fraud when the scored event's feature 0 plus the history's
    feature 1 is high, so the label needs both the last event and the sequence."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, T + 1, size=n).astype(np.int64)
    X = rng.normal(size=(n, T, F)).astype(np.float32)
    X[np.arange(T)[None, :] < (T - lengths)[:, None]] = 0.0
    history = X[:, :, 1].sum(axis=1) / lengths
    y = (X[:, -1, 0] + history > 0.8).astype(np.int64)
    return X, lengths, y


def tiny_cfg() -> SequenceModelConfig:
    return SequenceModelConfig(n_features=F, hidden=8, layers=1, head_hidden=8, dropout=0.1)


def fit(seed: int = 0, **fit_kwargs: object) -> tuple[FitResult, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    tr = windows(320, seed=1)
    va = windows(160, seed=2)
    cfg = FitConfig(**{"epochs": 3, "batch_size": 64, "lr": 1e-2, **fit_kwargs})  # type: ignore[arg-type]
    result = fit_sequence_model(*tr, *va, tiny_cfg(), cfg, seed=seed, device=CPU, progress=False)
    return result, va


def test_same_seed_gives_identical_weights_and_another_seed_does_not() -> None:
    a, _ = fit(seed=0)
    b, _ = fit(seed=0)
    c, _ = fit(seed=1)
    state_a, state_b, state_c = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert not all(torch.equal(state_a[k], state_c[k]) for k in state_a)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]


def test_learns_a_sequence_signal() -> None:
    result, (X_va, len_va, y_va) = fit(epochs=6)
    assert 0.2 < y_va.mean() < 0.5
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert average_precision(y_va, result.val_logits) > 0.8
    assert result.train_windows_per_s > 0


def test_keeps_the_weights_of_the_best_validation_epoch() -> None:
    result, (X_va, len_va, y_va) = fit(epochs=5, lr=3e-2)
    aps = [h["val_average_precision"] for h in result.history]
    assert result.best_epoch == int(np.argmax(aps)) + 1
    # the returned model is the best epoch's, not the last one's
    relogits = predict_logits(result.model, X_va, len_va, batch_size=50)
    np.testing.assert_allclose(relogits, result.val_logits, atol=1e-5)
    assert average_precision(y_va, relogits) == pytest.approx(max(aps))


def test_stops_early_when_validation_does_not_improve() -> None:
    # lr 0: the weights never move, so no epoch beats the first
    result, _ = fit(epochs=6, lr=0.0, patience=2)
    assert len(result.history) == 3
    assert result.best_epoch == 1


def test_fit_leaves_the_global_determinism_flag_as_it_was() -> None:
    before = torch.are_deterministic_algorithms_enabled()
    fit(epochs=1)
    assert torch.are_deterministic_algorithms_enabled() == before


def test_negative_sampling_and_focal_loss_train() -> None:
    result, (_, _, y_va) = fit(epochs=4, loss="focal", neg_per_pos=1.0)
    assert math.isfinite(result.history[0]["train_loss"])
    assert result.pos_weight == pytest.approx(1.0)  # sqrt(1 negative per fraud)
    assert average_precision(y_va, result.val_logits) > 0.6


def test_predict_logits_returns_the_original_order() -> None:
    result, _ = fit(epochs=1)
    X, lengths, _ = windows(37, seed=5)
    got = predict_logits(result.model, X, lengths, batch_size=8)
    with torch.no_grad():
        want = result.model(torch.from_numpy(X), torch.from_numpy(lengths)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_length_bucketed_batches_cover_each_window_once() -> None:
    lengths = np.array([5, 1, 3, 5, 2, 4, 1, 6, 6, 2])
    batches = length_bucketed_batches(lengths, 3)
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    assert [lengths[b].max() for b in batches] == [2, 4, 5, 6]  # sorted, so short batches stay short
    assert lengths[batches[-1]].tolist() == [6, 6]  # whole-length windows are batched apart (no padding)
    shuffled = length_bucketed_batches(lengths, 3, np.random.default_rng(0), chunk_batches=2)
    assert sorted(np.concatenate(shuffled).tolist()) == list(range(10))


def test_epoch_sample_keeps_every_fraud() -> None:
    y = np.array([0] * 50 + [1] * 5)
    idx = epoch_sample(y, 2.0, np.random.default_rng(0))
    assert set(np.flatnonzero(y)) <= set(idx.tolist())
    assert (y[idx] == 0).sum() == 10
    assert len(epoch_sample(y, None, np.random.default_rng(0))) == 55


def test_focal_loss_by_hand() -> None:
    logits = torch.tensor([0.0, 0.0])
    y = torch.tensor([1.0, 0.0])
    # p = 0.5: each term is 0.5^2 * ln 2; the fraud term is weighted by 3
    assert focal_loss(logits, y, gamma=2.0, pos_weight=3.0).item() == pytest.approx(
        (3 + 1) * 0.25 * math.log(2) / 2
    )


def test_focal_loss_with_gamma_zero_is_weighted_bce() -> None:
    logits = torch.tensor([-3.0, -0.5, 0.2, 4.0, 30.0])
    y = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0])
    bce = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(2.5))(logits, y)
    torch.testing.assert_close(focal_loss(logits, y, gamma=0.0, pos_weight=2.5), bce)


def test_default_pos_weight_and_config_checks() -> None:
    assert default_pos_weight(n_pos=4, n_neg=100) == pytest.approx(5.0)
    assert default_pos_weight(n_pos=0, n_neg=100) == 1.0
    cfg = FitConfig(loss="focal", pos_weight=2.0)
    assert FitConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="loss"):
        FitConfig(loss="hinge")


def test_ema_keeps_the_moving_average_of_the_weights_it_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``ema`` the kept weights are the step-by-step EMA of the trained weights (checked against
    the average recomputed by hand), the same training trajectory runs as without it, and the
    stored validation logits are those of the kept weights."""
    import pipeline.fit

    decay = 0.8
    raw: list[dict[str, torch.Tensor]] = []  # the trained weights after every optimiser step
    real_epoch = pipeline.fit.train_epoch

    def spy(model, *args, after_step=None, **kwargs):  # type: ignore[no-untyped-def]
        def record() -> None:
            raw.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            if after_step is not None:
                after_step()

        return real_epoch(model, *args, after_step=record, **kwargs)

    monkeypatch.setattr(pipeline.fit, "train_epoch", spy)
    averaged, va = fit(epochs=1, ema=decay)
    steps, raw = raw, []
    plain, _ = fit(epochs=1)
    assert len(raw) == len(steps) > 3
    assert all(torch.equal(raw[-1][k], steps[-1][k]) for k in raw[-1])  # the EMA does not steer training

    expected = {k: v.clone() for k, v in steps[0].items()}  # the average starts at the first step's weights
    for state in steps[1:]:
        for k in expected:
            expected[k] = decay * expected[k] + (1 - decay) * state[k]
    kept = averaged.model.state_dict()
    for k in kept:
        torch.testing.assert_close(kept[k], expected[k])
    assert not all(torch.equal(kept[k], plain.model.state_dict()[k]) for k in kept)
    np.testing.assert_allclose(averaged.val_logits, predict_logits(averaged.model, va[0], va[1]), rtol=1e-5)
    with pytest.raises(ValueError, match="ema"):
        FitConfig(ema=1.0)


@pytest.mark.parametrize(("n_features", "embed", "aten"), [(3, 0, False), (40, 0, True), (40, 4, False)])
def test_wide_inputs_train_on_aten_kernels_and_the_flag_is_restored(
    monkeypatch: pytest.MonkeyPatch, n_features: int, embed: int, aten: bool
) -> None:
    import pipeline.fit

    seen: list[bool] = []
    real_epoch = pipeline.fit.train_epoch

    def spy(*args: object, **kwargs: object) -> float:
        seen.append(torch.backends.mkldnn.enabled)
        return real_epoch(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline.fit, "train_epoch", spy)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(96, T, n_features)).astype(np.float32)
    lengths = np.full(96, T, dtype=np.int64)
    y = (X[:, -1, 0] > 0.5).astype(np.int64)
    # hidden 8: 40 inputs are >= 4x the hidden size, 3 inputs (or a 4-wide projection) are not
    cfg = SequenceModelConfig(n_features=n_features, hidden=8, layers=1, head_hidden=8, embed=embed)
    before = torch.backends.mkldnn.enabled
    runs = [
        fit_sequence_model(
            X,
            lengths,
            y,
            X,
            lengths,
            y,
            cfg,
            FitConfig(epochs=2, batch_size=32),
            seed=0,
            device=CPU,
            progress=False,
        )
        for _ in range(2)
    ]
    assert seen == [before and not aten] * 4  # every epoch of both fits
    assert torch.backends.mkldnn.enabled == before
    a, b = (r.model.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)  # either kernel repeats exactly for a seed

"""Target-aware piecewise-linear encoding: edges from training labels, exact ramps, no leakage."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from features.encoding import PiecewiseLinearEncoder


def step_data(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Column 0 decides the label by a sharp rule at 3.0; column 1 is noise."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 5, size=(n, 2))
    return x, (x[:, 0] > 3.0).astype(np.int64)


def test_a_bin_edge_lands_on_the_label_rule_and_noise_gets_few_bins() -> None:
    x, y = step_data()
    enc = PiecewiseLinearEncoder.fit(x, y, max_bins=8, min_leaf=20)
    inner = np.asarray(enc.edges[0][1:-1])
    assert np.min(np.abs(inner - 3.0)) < 0.01
    # the outer edges cover the training range
    assert enc.edges[0][0] <= x[:, 0].min() and enc.edges[0][-1] >= x[:, 0].max()
    assert enc.n_components == sum(len(e) - 1 for e in enc.edges if e)


def test_each_component_ramps_from_zero_to_one_across_its_bin() -> None:
    enc = PiecewiseLinearEncoder([[0.0, 1.0, 3.0], []])
    x = np.array([[-1.0, 9.0], [0.5, 9.0], [1.0, 9.0], [2.0, 9.0], [4.0, 9.0]])
    out = enc.transform(x)
    assert out.shape == (5, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out, [[0, 0], [0.5, 0], [1, 0], [1, 0.5], [1, 1]])


def test_a_column_with_nothing_to_split_gets_no_bins() -> None:
    x = np.c_[np.ones(500), np.linspace(0, 1, 500)]
    y = (np.arange(500) % 7 == 0).astype(np.int64)
    enc = PiecewiseLinearEncoder.fit(x, y, max_bins=4, min_leaf=10)
    assert enc.edges[0] == []
    assert enc.transform(x).shape[1] == len(enc.edges[1]) - 1


def test_the_encoder_round_trips_through_a_dict() -> None:
    x, y = step_data()
    enc = PiecewiseLinearEncoder.fit(x, y, max_bins=4, min_leaf=50)
    again = PiecewiseLinearEncoder.from_dict(enc.to_dict())
    np.testing.assert_array_equal(again.transform(x), enc.transform(x))


def test_bad_shapes_and_bin_counts_are_refused() -> None:
    x, y = step_data(100)
    with pytest.raises(ValueError, match="max_bins"):
        PiecewiseLinearEncoder.fit(x, y, max_bins=1)
    with pytest.raises(ValueError, match="len"):
        PiecewiseLinearEncoder.fit(x, y[:10])
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        PiecewiseLinearEncoder.fit(x, y).transform(x[:, :1])


def _tiny_prep(tmp_path):  # type: ignore[no-untyped-def]
    """The handbook tests' synthetic file over every fold, prepared with windows of 4 events."""
    from pipeline import benchmark as B
    from tests.test_handbook import synthetic_file

    return B.prepare(synthetic_file(tmp_path), 4)


def test_benchmark_windows_carry_the_bins_and_their_edges_come_from_training_rows_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from features import handbook as hb
    from pipeline import benchmark as B

    prep = _tiny_prep(tmp_path)
    fold = hb.Fold(date(2018, 7, 25))
    fd = B.fold_data(prep, fold)
    B.use_encoding(prep, fd, {"max_bins": 4, "min_leaf": 5})
    assert fd.encoder is not None
    x, lengths = B.windows(prep, fd, "test")
    F = prep.x.shape[1]
    assert x.shape[2] == F + fd.encoder.n_components
    # the bins of each real event are the encoder's transform of its raw features; padding is zero
    idx = prep.window_index[fd.rows["test"]]
    real = idx >= 0
    np.testing.assert_allclose(x[real][:, F:], fd.encoder.transform(prep.x[idx[real]]), atol=1e-6)
    assert not x[~real].any()

    # relabelling every test-period and early-stop row changes no edge
    flipped = prep.x.copy()
    others = np.setdiff1d(np.arange(len(prep.x)), fd.rows["train"])
    flipped[others] = flipped[others][::-1]
    fd2 = B.fold_data(B.Prepared(prep.frame, flipped, prep.window_index), fold)
    fd2.y = {k: (1 - v if k != "train" else v) for k, v in fd2.y.items()}
    B.use_encoding(B.Prepared(prep.frame, flipped, prep.window_index), fd2, {"max_bins": 4, "min_leaf": 5})
    assert fd2.encoder is not None and fd2.encoder.edges == fd.encoder.edges


def test_encoding_off_gives_the_standardised_windows_alone_and_a_new_config_refits(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from features import handbook as hb
    from pipeline import benchmark as B

    prep = _tiny_prep(tmp_path)
    fd = B.fold_data(prep, hb.Fold(date(2018, 7, 25)))
    B.use_encoding(prep, fd, {"max_bins": 0})
    plain, lengths = B.windows(prep, fd, "train")
    assert fd.encoder is None and plain.shape[2] == prep.x.shape[1]
    idx = prep.window_index[fd.rows["train"]]
    want = np.where((idx >= 0)[:, :, None], (prep.x[np.maximum(idx, 0)] - fd.mean) / fd.std, 0.0)
    np.testing.assert_allclose(plain, want, atol=1e-5)
    B.use_encoding(prep, fd, {"max_bins": 4, "min_leaf": 5})
    assert B.windows(prep, fd, "train")[0].shape[2] > plain.shape[2]  # the cache was rebuilt


def test_the_no_history_ablation_reads_the_scored_transaction_alone(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    import pipeline.fit
    from features import handbook as hb
    from pipeline import benchmark as B

    prep = _tiny_prep(tmp_path)  # windows of 4 events
    fd = B.fold_data(prep, hb.Fold(date(2018, 7, 25)))
    seen: list[tuple[int, int]] = []
    real = pipeline.fit.fit_sequence_model

    def spy(x_tr, len_tr, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((x_tr.shape[1], int(len_tr.max())))
        return real(x_tr, len_tr, *args, **kwargs)

    monkeypatch.setattr(pipeline.fit, "fit_sequence_model", spy)
    config = B._set(B.load_config(Path("no-such-config.json")), "fit.epochs", 1)
    last, _ = B.score_sequence(B.NO_HISTORY, prep, fd, config, 0, False)
    full, _ = B.score_sequence("bilstm", prep, fd, config, 0, False)
    assert seen == [(1, 1), (4, 4)]
    assert len(last) == len(full) == len(fd.test)

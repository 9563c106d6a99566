"""The ONNX Runtime scoring engine: same logits as torch, chosen by FRAUDSEQ_SCORE_ENGINE, never pickled."""

from __future__ import annotations

import pickle
from datetime import timedelta

import numpy as np
import onnx
import pytest
import torch

from pipeline.errors import UsageError
from pipeline.fit import ENGINE_ENV, predict_logits, score_engine
from pipeline.model import SequenceModelConfig, build_model
from pipeline.onnx_engine import OnnxScorer, export_graph, onnx_logits

from .conftest import ZONE_START, use_home

W = 12


def windows(n: int, n_features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded random windows, a third of them whole, the rest of every shorter length."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, W + 1, size=n)
    lengths[: n // 3] = W
    x = rng.standard_normal((n, W, n_features)).astype(np.float32)
    for i, length in enumerate(lengths):
        x[i, : W - length] = 0.0
    return x, lengths


def test_onnx_logits_equal_torch_and_do_not_depend_on_the_batch() -> None:
    torch.manual_seed(0)
    net = build_model(SequenceModelConfig(n_features=5, hidden=8, layers=2, head_hidden=4)).eval()
    x, lengths = windows(200, 5, 1)
    scorer = OnnxScorer(net, W, threads=1)

    def batch(idx: np.ndarray, width: int) -> np.ndarray:
        assert width == W  # the engine always reads whole, left-padded windows
        return x[idx].copy()

    got = onnx_logits(scorer, batch, lengths, batch_size=64)
    want = predict_logits(net, x, lengths, batch_size=64, device=torch.device("cpu"))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # a window's logit is the same whatever else its batch holds (the shard test relies on it)
    np.testing.assert_array_equal(onnx_logits(scorer, batch, lengths, batch_size=7), got)
    with pytest.raises(ValueError, match="whole windows of 12 events"):
        scorer(x[:3, 1:], lengths[:3])


def test_the_whole_window_graph_agrees_with_the_general_one() -> None:
    """Whole windows go to the graph without masks; it gives the general graph's logits."""
    torch.manual_seed(1)
    net = build_model(SequenceModelConfig(n_features=5, hidden=8, layers=2, head_hidden=4)).eval()
    x, lengths = windows(120, 5, 2)
    scorer = OnnxScorer(net, W, threads=1)
    whole = lengths == W
    assert 0 < whole.sum() < len(lengths)
    feed = {"x": x[whole], "lengths": lengths[whole].astype(np.int64)}
    general = scorer.session.run(None, feed)[0]
    unmasked = scorer.whole_session.run(None, feed)[0]
    np.testing.assert_allclose(unmasked, general, rtol=1e-6, atol=1e-6)
    wheres = {
        name: sum(node.op_type == "Where" for node in onnx.load_from_string(graph).graph.node)
        for name, graph in (("general", export_graph(net, W)), ("whole", export_graph(net, W, whole=True)))
    }
    # the four masks of the pooling are gone; one Where stays, in the (T, B) index map between layers
    assert wheres == {"general": 5, "whole": 1}
    # a mixed batch scores each window with its own graph: the same as scoring them apart
    mixed = scorer(x, lengths)
    np.testing.assert_array_equal(mixed[whole], scorer(x[whole], lengths[whole]))
    np.testing.assert_array_equal(mixed[~whole], scorer(x[~whole], lengths[~whole]))


def test_the_engine_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.fit as fit
    import pipeline.onnx_engine as onnx_engine

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.delenv(ENGINE_ENV, raising=False)
    monkeypatch.setattr(onnx_engine, "available", lambda: True)
    monkeypatch.setattr(fit, "score_amp", lambda device=None: False)
    assert score_engine(cpu) == "onnx" and score_engine() == "onnx"  # fp32 on the CPU: ONNX Runtime
    assert score_engine(cuda) == "torch"
    monkeypatch.setattr(fit, "score_amp", lambda device=None: True)
    assert score_engine(cpu) == "torch"  # bf16 autocast is torch's, and faster where it is on
    monkeypatch.setattr(fit, "score_amp", lambda device=None: False)
    monkeypatch.setattr(onnx_engine, "available", lambda: False)
    assert score_engine(cpu) == "torch"  # without onnxruntime installed, torch scores
    monkeypatch.setenv(ENGINE_ENV, "onnx")
    assert score_engine(cpu) == "onnx"
    with pytest.raises(UsageError, match="CPU only"):
        score_engine(cuda)
    monkeypatch.setenv(ENGINE_ENV, "TORCH")
    assert score_engine(cpu) == "torch"
    monkeypatch.setenv(ENGINE_ENV, "tensorrt")
    with pytest.raises(UsageError, match="use auto, torch or onnx"):
        score_engine(cpu)


def test_bundle_scores_through_onnx_when_asked_and_pickles_without_the_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from features.windows import Normaliser
    from pipeline.registry import ModelBundle

    monkeypatch.setenv("FRAUDSEQ_DEVICE", "cpu")
    # the reference is torch's fp32 forward pass: unset, torch scores in bf16 on CPUs that run it
    monkeypatch.setenv("FRAUDSEQ_SCORE_AMP", "0")
    torch.manual_seed(0)
    cfg = SequenceModelConfig(n_features=3, hidden=8, head_hidden=4)
    rng = np.random.default_rng(2)
    norm = Normaliser.fit(rng.standard_normal((100, 3)) * 5 + 2, ("log_amount", "log_gap_prev", "is_real"))
    bundle = ModelBundle(build_model(cfg).eval(), cfg.to_dict(), norm, {}, W)
    x, lengths = windows(40, 3, 3)
    x = x * 5 + 2
    before = x.copy()
    monkeypatch.setenv(ENGINE_ENV, "torch")
    want = bundle.logits(x, lengths, batch_size=16)
    assert bundle._onnx is None
    monkeypatch.setenv(ENGINE_ENV, "onnx")
    got = bundle.logits(x, lengths, batch_size=16)
    assert isinstance(bundle._onnx, OnnxScorer)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(x, before)  # the caller's windows are scaled in a copy
    # an explicit amp (the gate's fp32 comparison) is torch's own forward pass
    np.testing.assert_array_equal(bundle.logits(x, lengths, batch_size=16, amp=False), want)
    copy = pickle.loads(pickle.dumps(bundle))  # MLflow pickles the bundle into the pyfunc model
    assert copy._onnx is None and bundle._onnx is not None
    np.testing.assert_allclose(copy.logits(x, lengths, batch_size=16), got, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_a_scored_day_is_the_same_with_either_engine(home_copy, small_zone, monkeypatch) -> None:
    """The production model on a real day: ONNX Runtime and torch give the same scores and alerts."""
    from pipeline.config import Settings
    from pipeline.registry import load_bundle, resolve_version, use_tracking
    from pipeline.score import score_events
    from pipeline.sequences import check_days, load_events

    day = ZONE_START + timedelta(days=23)
    use_home(monkeypatch, home_copy, small_zone)
    monkeypatch.setenv("FRAUDSEQ_SCORE_AMP", "0")
    settings = Settings()
    use_tracking(settings.tracking_uri)
    name, version = resolve_version(None, settings.model_name)
    data = load_events(settings, check_days(settings, [day], settings.history_range(day)))
    out = {}
    for engine in ("torch", "onnx"):
        monkeypatch.setenv(ENGINE_ENV, engine)
        out[engine] = score_events(load_bundle(name, version), data, day, 15, name, version).sort("event_id")
    torch_day, onnx_day = out["torch"], out["onnx"]
    assert onnx_day.height == torch_day.height > 0
    assert onnx_day["event_id"].equals(torch_day["event_id"])
    diff = np.abs(onnx_day["risk_score"].to_numpy() - torch_day["risk_score"].to_numpy()).max()
    assert diff < 1e-5
    assert onnx_day.filter("alert")["event_id"].equals(torch_day.filter("alert")["event_id"])
    assert (onnx_day.filter("alert")["reasons"] != "[]").all()


def test_the_saved_bundle_carries_its_onnx_graph_and_old_bundles_still_score(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from features.windows import Normaliser
    from pipeline import onnx_engine
    from pipeline.registry import ModelBundle

    monkeypatch.setenv("FRAUDSEQ_DEVICE", "cpu")
    monkeypatch.setenv(ENGINE_ENV, "onnx")
    torch.manual_seed(0)
    cfg = SequenceModelConfig(n_features=3, hidden=8, head_hidden=4)
    rng = np.random.default_rng(5)
    norm = Normaliser.fit(rng.standard_normal((100, 3)), ("log_amount", "log_gap_prev", "is_real"))
    folder = ModelBundle(build_model(cfg).eval(), cfg.to_dict(), norm, {}, W).save(tmp_path / "bundle")
    assert (folder / "model.onnx").stat().st_size > 0
    assert (folder / "model-whole.onnx").stat().st_size > 0
    x, lengths = windows(30, 3, 6)
    exported = ModelBundle.load(folder).logits(x, lengths)  # the reference: scored with the saved graph

    def no_export(*args: object) -> bytes:
        raise AssertionError("the saved graph should have been used")

    monkeypatch.setattr(onnx_engine, "export_graph", no_export)
    loaded = ModelBundle.load(folder)
    assert loaded.onnx_graph == (folder / "model.onnx").read_bytes()
    assert loaded.onnx_whole_graph == (folder / "model-whole.onnx").read_bytes()
    np.testing.assert_array_equal(loaded.logits(x, lengths), exported)
    monkeypatch.undo()
    monkeypatch.setenv("FRAUDSEQ_DEVICE", "cpu")
    monkeypatch.setenv(ENGINE_ENV, "onnx")
    (folder / "model.onnx").unlink()  # a bundle registered before the ONNX engine existed
    (folder / "model-whole.onnx").unlink()
    old = ModelBundle.load(folder)
    assert old.onnx_graph is None and old.onnx_whole_graph is None
    np.testing.assert_array_equal(old.logits(x, lengths), exported)

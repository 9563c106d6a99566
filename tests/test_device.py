"""Device selection for training and scoring: FRAUDSEQ_DEVICE, checked on any machine (CUDA or not)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.errors import UsageError
from pipeline.fit import (
    DEVICE_ENV,
    cpu_bf16_supported,
    pick_device,
    predict_logits,
    score_amp,
    to_tensors,
)
from pipeline.model import SequenceModelConfig, build_model


def test_auto_follows_cuda_availability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device().type == "cpu"
    monkeypatch.setenv(DEVICE_ENV, "AUTO")
    assert pick_device().type == "cpu"


def test_forced_choices_and_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert pick_device().type == "cpu"  # the setting wins over an available GPU
    assert pick_device("cuda:1") == torch.device("cuda", 1)  # an explicit argument wins over the setting
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    with pytest.raises(UsageError, match="no CUDA device"):
        pick_device()
    monkeypatch.setenv(DEVICE_ENV, "tpu")
    with pytest.raises(UsageError, match="auto, cpu, cuda"):
        pick_device()


def test_score_amp_is_on_by_default_only_on_a_cpu_with_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.fit as fit

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.delenv("FRAUDSEQ_SCORE_AMP", raising=False)
    monkeypatch.setattr(fit, "cpu_bf16_supported", lambda: True)
    monkeypatch.setattr(fit, "cpu_has_native_bf16", lambda: True)
    assert score_amp(cpu) is True and score_amp() is True
    assert score_amp(cuda) is False  # not measured on a GPU: fp32 unless asked
    monkeypatch.setattr(fit, "cpu_has_native_bf16", lambda: False)  # emulated bf16 is slower
    assert score_amp(cpu) is False
    monkeypatch.setattr(fit, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(fit, "cpu_bf16_supported", lambda: False)  # oneDNN cannot run it
    assert score_amp(cpu) is False
    monkeypatch.setenv("FRAUDSEQ_SCORE_AMP", "auto")
    assert score_amp(cpu) is False
    monkeypatch.setenv("FRAUDSEQ_SCORE_AMP", "1")
    assert score_amp(cpu) is True and score_amp(cuda) is True
    monkeypatch.setenv("FRAUDSEQ_SCORE_AMP", "0")
    monkeypatch.setattr(fit, "cpu_bf16_supported", lambda: True)
    assert score_amp(cpu) is False
    monkeypatch.setenv("FRAUDSEQ_SCORE_AMP", "bf16")
    with pytest.raises(UsageError, match="use auto, 1 or 0"):
        score_amp(cpu)


def test_batches_are_cut_scaled_and_moved_to_the_chosen_device() -> None:
    X = np.arange(2 * 4 * 1, dtype=np.float32).reshape(2, 4, 1)
    lengths = np.array([2, 1])
    seen = {}

    def double(x: np.ndarray, lens: np.ndarray) -> np.ndarray:
        seen["lens"] = lens.tolist()
        x *= 2
        return x

    x, lens = to_tensors(X, lengths, np.array([1, 0]), torch.device("cpu"), double)
    assert x.shape == (2, 2, 1) and x.device.type == "cpu"
    assert x[:, :, 0].tolist() == [[12.0, 14.0], [4.0, 6.0]] and lens.tolist() == [1, 2] == seen["lens"]
    assert X[0, 2, 0] == 2.0  # the caller's array is untouched


def test_scoring_on_the_selected_device_gives_the_cpu_logits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scoring path moves the model to ``pick_device()``; here that is forced to the CPU."""
    torch.manual_seed(0)
    net = build_model(SequenceModelConfig(n_features=3, hidden=8, head_hidden=4)).eval()
    rng = np.random.default_rng(1)
    X = rng.standard_normal((20, 6, 3)).astype(np.float32)
    lengths = rng.integers(1, 7, size=20)
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    got = predict_logits(net, X, lengths, batch_size=7, device=pick_device())
    want = predict_logits(net, X, lengths, batch_size=20)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert next(net.parameters()).device.type == "cpu"


def test_bundle_scales_each_batch_like_the_whole_array(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-batch scaling in ``ModelBundle.logits`` gives the logits of scaling everything first."""
    from features.windows import Normaliser
    from pipeline.registry import ModelBundle

    monkeypatch.setenv(DEVICE_ENV, "cpu")
    monkeypatch.setenv("FRAUDSEQ_SCORE_AMP", "0")  # the reference below is fp32
    torch.manual_seed(0)
    cfg = SequenceModelConfig(n_features=3, hidden=8, head_hidden=4)
    net = build_model(cfg).eval()
    rng = np.random.default_rng(2)
    norm = Normaliser.fit(rng.standard_normal((100, 3)) * 5 + 2, ("log_amount", "log_gap_prev", "is_real"))
    windows = (rng.standard_normal((30, 6, 3)) * 5 + 2).astype(np.float32)
    lengths = rng.integers(1, 7, size=30)
    before = windows.copy()
    bundle = ModelBundle(net, cfg.to_dict(), norm, {}, 6)
    got = bundle.logits(windows, lengths, batch_size=8)
    want = predict_logits(net, bundle.normalise_windows(windows, lengths), lengths, batch_size=30)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(windows, before)  # the caller's raw windows are not scaled in place


def test_predict_rows_gathers_lazily_and_equals_predict_proba_of_gathered_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from features.windows import Normaliser, gather_windows
    from pipeline.calibration import PlattCalibrator
    from pipeline.registry import ModelBundle

    monkeypatch.setenv(DEVICE_ENV, "cpu")
    monkeypatch.setenv("FRAUDSEQ_SCORE_AMP", "0")  # the reference below is fp32
    torch.manual_seed(0)
    cfg = SequenceModelConfig(n_features=3, hidden=8, head_hidden=4)
    rng = np.random.default_rng(4)
    customer = np.sort(rng.integers(0, 9, size=80))
    first = np.ones(80, dtype=bool)
    first[1:] = customer[1:] != customer[:-1]
    starts = np.flatnonzero(first)[np.cumsum(first) - 1]
    matrix = (rng.standard_normal((80, 3)) * 4 + 1).astype(np.float32)
    norm = Normaliser.fit(matrix, ("log_amount", "log_gap_prev", "is_real"))
    calib = PlattCalibrator().fit(rng.standard_normal(50), rng.integers(0, 2, 50)).to_dict()
    bundle = ModelBundle(build_model(cfg).eval(), cfg.to_dict(), norm, calib, 6)
    rows = np.array([79, 0, 3, 40, 41, 2, 60, 5, 79])  # unsorted, repeated, short and whole windows
    want = bundle.predict_proba(*gather_windows(matrix, starts, rows, 6))
    got = bundle.predict_rows(matrix, starts, rows, batch_size=4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_unmasked_pooling_of_whole_windows_equals_the_masked_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch with no padding takes plain mean/max pooling; it must give the masked path's logits."""
    from pipeline import model as model_module

    torch.manual_seed(0)
    net = build_model(SequenceModelConfig(n_features=4, hidden=8, head_hidden=4)).eval()
    x, lengths = torch.randn(16, 7, 4), torch.full((16,), 7)
    with torch.inference_mode():
        fast = net(x, lengths)
        init = model_module.Layouts.__init__

        def masked(self: model_module.Layouts, lens: torch.Tensor, T: int) -> None:
            init(self, lens, T)
            assert self.full  # the fast path would have been taken
            self.full = False

        monkeypatch.setattr(model_module.Layouts, "__init__", masked)
        slow = net(x, lengths)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-6)


@pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU cannot run bf16 (no AVX-512)")
def test_score_amp_runs_the_model_in_bf16_on_cpu_and_keeps_the_logits_close() -> None:
    from pipeline.fit import autocast

    cpu = torch.device("cpu")
    with autocast(cpu, True):
        assert torch.nn.Linear(4, 2)(torch.ones(3, 4)).dtype == torch.bfloat16
    with autocast(cpu, False):
        assert torch.nn.Linear(4, 2)(torch.ones(3, 4)).dtype == torch.float32

    torch.manual_seed(0)
    net = build_model(SequenceModelConfig(n_features=6, hidden=16, layers=2)).eval()
    x = np.random.default_rng(0).standard_normal((64, 10, 6)).astype(np.float32)
    lengths = np.random.default_rng(1).integers(1, 11, 64)
    fp32 = predict_logits(net, x, lengths, device=cpu)
    bf16 = predict_logits(net, x, lengths, device=cpu, amp=True)
    assert not np.array_equal(fp32, bf16)  # bf16 really ran
    np.testing.assert_allclose(bf16, fp32, atol=0.05)


@pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU cannot run bf16 (no AVX-512)")
def test_bf16_scoring_on_cpu_widens_odd_inputs_and_fp32_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 27 event features are odd: in bf16 the scoring pass runs the widened copy
    (``even_inputs``, so oneDNN may use AMX), with logits close to fp32's; fp32 runs the model."""
    from pipeline import model as model_module

    widened: list[model_module.SequenceClassifier] = []
    real = model_module.even_inputs

    def spy(net: model_module.SequenceClassifier) -> model_module.SequenceClassifier:
        out = real(net)
        widened.append(out)
        return out

    monkeypatch.setattr(model_module, "even_inputs", spy)
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    net = build_model(SequenceModelConfig(n_features=7, hidden=16, layers=2)).eval()
    x = np.random.default_rng(0).standard_normal((64, 10, 7)).astype(np.float32)
    lengths = np.random.default_rng(1).integers(1, 11, 64)
    fp32 = predict_logits(net, x, lengths, device=cpu)
    assert widened == []
    bf16 = predict_logits(net, x, lengths, device=cpu, amp=True)
    assert len(widened) == 1 and widened[0] is not net and widened[0].input_pad == 1
    np.testing.assert_allclose(bf16, fp32, atol=0.05)


@pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU cannot run bf16 (no AVX-512)")
def test_bf16_scores_do_not_depend_on_the_other_windows_of_the_batch() -> None:
    """Shards batch windows differently, and a batch is cut to its longest window: in bf16 too a
    window's score must not move with the length its batch is cut to."""
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    net = build_model(SequenceModelConfig(n_features=6, hidden=16, layers=2)).eval()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 32, 6)).astype(np.float32)
    lengths = rng.integers(1, 21, 300)
    lengths[-1] = 32  # one long window: scored together, every window is cut to 32 events
    together = predict_logits(net, x, lengths, device=cpu, amp=True)
    short = predict_logits(net, x[:-1], lengths[:-1], device=cpu, amp=True)  # cut to 20
    # equal up to the fp32 rounding of the pooling and the head (bf16 rounding would be ~1e-3)
    np.testing.assert_allclose(together[:-1], short, rtol=0, atol=1e-6)
    assert len(np.unique(together)) == len(together)  # the fp32 head does not round scores into ties


def test_score_amp_on_a_cpu_without_bf16_scores_in_fp32_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import pipeline.fit as fit

    monkeypatch.setattr(fit, "cpu_bf16_supported", lambda: False)
    fit._warn_no_cpu_bf16.cache_clear()
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    net = build_model(SequenceModelConfig(n_features=6, hidden=16, layers=2)).eval()
    x = np.random.default_rng(0).standard_normal((64, 10, 6)).astype(np.float32)
    lengths = np.random.default_rng(1).integers(1, 11, 64)
    with caplog.at_level("WARNING", logger="pipeline.fit"):
        asked = predict_logits(net, x, lengths, device=cpu, amp=True)
        predict_logits(net, x, lengths, device=cpu, amp=True)
    np.testing.assert_array_equal(asked, predict_logits(net, x, lengths, device=cpu))
    warnings = [r for r in caplog.records if "cannot run bf16" in r.getMessage()]
    assert len(warnings) == 1  # once per process, not once per batch
    with fit.autocast(cpu, True):
        assert torch.nn.Linear(4, 2)(torch.ones(3, 4)).dtype == torch.float32

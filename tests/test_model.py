"""Model behaviour: padding can never matter, the scored event and its history do."""

from __future__ import annotations

import pytest
import torch

from pipeline.model import SequenceClassifier, SequenceModelConfig, build_model, even_inputs

ZOO = [("rnn", False), ("gru", False), ("lstm", False), ("lstm", True), ("gru", True)]


def tiny(cell: str = "lstm", bidirectional: bool = True, layers: int = 2) -> SequenceClassifier:
    torch.manual_seed(0)
    cfg = SequenceModelConfig(
        n_features=5, cell=cell, hidden=8, layers=layers, bidirectional=bidirectional, head_hidden=8
    )
    return build_model(cfg).eval()


def left_padded(lengths: list[int], T: int, F: int = 5, pad_value: float = 0.0) -> torch.Tensor:
    """Random real events at the end of each row, ``pad_value`` before them."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(len(lengths), T, F, generator=g)  # (B, T, F)
    for i, n in enumerate(lengths):
        x[i, : T - n] = pad_value
    return x


@pytest.mark.parametrize(("cell", "bidirectional"), ZOO)
def test_padding_does_not_change_the_logit(cell: str, bidirectional: bool) -> None:
    model = tiny(cell, bidirectional)
    lengths = torch.tensor([1, 3, 8, 5])
    x8 = left_padded(lengths.tolist(), 8)  # (4, 8, 5)
    x16 = torch.cat([torch.zeros(4, 8, 5), x8], dim=1)  # (4, 16, 5) same events, more padding
    with torch.no_grad():
        short, long = model(x8, lengths), model(x16, lengths)
    assert short.shape == (4,)
    torch.testing.assert_close(short, long, atol=1e-5, rtol=0)


def test_skip_head_keeps_padding_invariance_and_reads_the_scored_event() -> None:
    torch.manual_seed(0)
    model = build_model(
        SequenceModelConfig(n_features=5, hidden=8, layers=1, head_hidden=8, skip=True)
    ).eval()
    assert model.head[0].in_features == 3 * 16 + 5  # pooled states + the scored event's inputs
    lengths = torch.tensor([1, 3, 8, 5])
    x8 = left_padded(lengths.tolist(), 8)
    x16 = torch.cat([torch.full((4, 8, 5), 1e3), x8], dim=1)  # more padding, and garbage in it
    with torch.no_grad():
        torch.testing.assert_close(model(x8, lengths), model(x16, lengths), atol=1e-5, rtol=0)


def test_padding_content_is_ignored() -> None:
    # the mask, not the zeros, makes padding harmless: garbage in the padding changes nothing
    model = tiny()
    lengths = torch.tensor([2, 4, 6])
    clean = left_padded(lengths.tolist(), 6)
    dirty = clean.clone()
    for i, n in enumerate(lengths.tolist()):
        dirty[i, : 6 - n] = 1e3
    with torch.no_grad():
        torch.testing.assert_close(model(clean, lengths), model(dirty, lengths), atol=1e-5, rtol=0)


def test_a_window_does_not_depend_on_its_batch() -> None:
    model = tiny()
    lengths = torch.tensor([3, 7, 1, 7])
    x = left_padded(lengths.tolist(), 7)
    with torch.no_grad():
        together = model(x, lengths)
        alone = torch.stack([model(x[i : i + 1], lengths[i : i + 1])[0] for i in range(4)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("cell", "bidirectional"), ZOO)
def test_scored_event_and_history_both_move_the_logit(cell: str, bidirectional: bool) -> None:
    model = tiny(cell, bidirectional)
    lengths = torch.tensor([5])
    x = left_padded([5], 8)
    last, history = x.clone(), x.clone()
    last[0, -1] += 2.0  # the transaction being scored
    history[0, 3] += 2.0  # the first real event
    with torch.no_grad():
        base = model(x, lengths)
        assert (model(last, lengths) - base).abs().item() > 1e-4
        assert (model(history, lengths) - base).abs().item() > 1e-4


def test_train_mode_dropout_is_active_and_eval_is_not() -> None:
    model = tiny()
    x = left_padded([4, 4], 4)
    lengths = torch.tensor([4, 4])
    model.train()
    torch.manual_seed(0)
    a = model(x, lengths)
    b = model(x, lengths)
    assert not torch.equal(a, b)
    model.eval()
    assert torch.equal(model(x, lengths), model(x, lengths))


def test_gradients_reach_every_parameter() -> None:
    model = tiny().train()
    lengths = torch.tensor([2, 5])
    model(left_padded([2, 5], 5), lengths).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_config_round_trips_and_rejects_bad_values() -> None:
    cfg = SequenceModelConfig(n_features=7, cell="gru", hidden=16, layers=1, bidirectional=False)
    assert SequenceModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="cell"):
        SequenceModelConfig(n_features=3, cell="transformer")
    with pytest.raises(ValueError, match="unknown"):
        SequenceModelConfig.from_dict({"n_features": 3, "colour": "red"})


def test_rebuilt_model_from_state_dict_gives_the_same_logits() -> None:
    model = tiny("gru", True, layers=3)
    clone = build_model(model.cfg)
    clone.load_state_dict(model.state_dict())
    clone.eval()
    x = left_padded([3, 6], 6)
    lengths = torch.tensor([3, 6])
    with torch.no_grad():
        assert torch.equal(model(x, lengths), clone(x, lengths))


def test_input_projection_keeps_padding_invariance_and_narrows_the_recurrence() -> None:
    torch.manual_seed(0)
    model = build_model(SequenceModelConfig(n_features=5, hidden=8, layers=2, head_hidden=8, embed=3)).eval()
    assert model.embed is not None and model.embed.out_features == 3
    assert model.layers[0].forward_rnn.input_size == 3  # the recurrence reads the projection
    lengths = torch.tensor([1, 3, 8, 5])
    x8 = left_padded(lengths.tolist(), 8)
    # the projection maps padding to its bias, not to zero: the layouts must still hide it
    x16 = torch.cat([torch.full((4, 8, 5), 1e3), x8], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(x8, lengths), model(x16, lengths), atol=1e-5, rtol=0)
    model.train()
    model(x8, lengths).sum().backward()
    assert model.embed.weight.grad is not None and model.embed.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="embed"):
        SequenceModelConfig(n_features=5, embed=-1)
    assert SequenceModelConfig(n_features=5).embed == 0  # off unless asked: stored models load as before


@pytest.mark.parametrize(
    ("cell", "bidirectional", "skip", "embed"),
    [*((c, b, False, 0) for c, b in ZOO), ("lstm", True, True, 0), ("lstm", True, False, 3)],
)
def test_even_inputs_widens_an_odd_first_layer_and_keeps_every_logit(
    cell: str, bidirectional: bool, skip: bool, embed: int
) -> None:
    """oneDNN runs a bf16 LSTM on AMX only with an even input width: the copy reads one zero column
    more (the 5 features, or an odd projection of them) and scores exactly as the model does."""
    torch.manual_seed(0)
    cfg = SequenceModelConfig(
        n_features=5,
        cell=cell,
        hidden=8,
        layers=2,
        bidirectional=bidirectional,
        head_hidden=8,
        skip=skip,
        embed=embed,
    )
    model = build_model(cfg).eval()
    widened = even_inputs(model)
    first = widened.layers[0]
    assert first.forward_rnn.input_size == cfg.recurrent_inputs + 1
    if bidirectional:
        assert first.backward_rnn.input_size == cfg.recurrent_inputs + 1
    # the model itself is untouched: it is still the one that trains and is saved
    assert model.input_pad == 0 and model.layers[0].forward_rnn.input_size == cfg.recurrent_inputs
    assert even_inputs(widened) is widened and not widened.training
    lengths = torch.tensor([1, 3, 8, 5])
    x = left_padded(lengths.tolist(), 8)
    with torch.no_grad():
        torch.testing.assert_close(widened(x, lengths), model(x, lengths), atol=1e-6, rtol=0)


def test_even_inputs_leaves_an_even_model_alone() -> None:
    torch.manual_seed(0)
    model = build_model(SequenceModelConfig(n_features=6, hidden=8, head_hidden=8))
    assert even_inputs(model) is model

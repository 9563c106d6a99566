"""The sequence classifier: a stacked (bi)directional RNN / GRU / LSTM over one event window.

Input convention (built by ``features.windows``): ``x`` is ``(B, T, F)``, LEFT-padded with zeros,
so the last ``lengths[i]`` positions of row ``i`` are real events and position ``T - 1`` is the
transaction being scored.

Padding invariance, exactly and without ``pack_padded_sequence`` (packed models do not export,
and were slower on CPU; see STACK_NOTES). Each direction of each layer is its own unidirectional
cuDNN/MKL recurrence that reads a time-major layout in which the real events come *first*:

- the forward direction reads layout ``R``: the window rolled so that it is right-padded;
- the backward direction reads layout ``V``: the window flipped in time, which puts the reversed
  real events first and the padding after them.

A recurrence never meets padding before a real event, so the real outputs do not depend on how
much padding there is or what it holds. Between layers the two directions are re-aligned with
one ``index_select`` each; pooling is masked, and mean/max need no re-alignment at all. The
result is exact (bit-identical in eval mode for T=8 vs T=16) and costs about what one
``nn.LSTM(bidirectional=True)`` does. ``predict_logits`` still trims each length bucket to its
longest window, for speed only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn
from torch.nn import functional

CELLS: dict[str, Callable[..., nn.Module]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


@dataclass
class SequenceModelConfig:
    """Shape of the network; stored beside the weights so a model can be rebuilt."""

    n_features: int
    cell: str = "lstm"  # "rnn" | "gru" | "lstm"
    hidden: int = 64
    layers: int = 2
    bidirectional: bool = True
    dropout: float = 0.2
    head_hidden: int = 64
    skip: bool = False  # the scored transaction's own inputs also go straight to the head
    embed: int = 0  # > 0: one linear map of each event's inputs to this width before the first layer

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {self.cell!r}")
        if self.n_features < 1 or self.hidden < 1 or self.layers < 1 or self.head_hidden < 1:
            raise ValueError("n_features, hidden, layers and head_hidden must be >= 1")
        if self.embed < 0:
            raise ValueError(f"embed must be >= 0 (0 = no projection), got {self.embed}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def recurrent_inputs(self) -> int:
        """Width of what the first recurrent layer reads: the projection's, or the raw inputs'."""
        return self.embed or self.n_features

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SequenceModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)


def select_rows(h: torch.Tensor, source_t: torch.Tensor, batch_major: bool = False) -> torch.Tensor:
    """Time-major ``out[t, b] = h[source_t[t, b], b]`` (``h[b, source_t[t, b]]`` if ``batch_major``).

    ``index_select`` of whole feature rows is far cheaper on CPU than ``gather`` or ``flip``.
    """
    T, B = source_t.shape
    D = h.shape[-1]
    batch = torch.arange(B, device=h.device)[None, :]  # (1, B)
    flat = batch * T + source_t if batch_major else source_t * B + batch  # (T, B)
    return h.reshape(-1, D).index_select(0, flat.reshape(-1)).view(T, B, D)  # (T, B, D)


class Layouts:
    """Index maps between the left-padded input and the two real-first, time-major layouts.

    forward layout ``R``: event ``j`` at ``t = j``; reversed layout ``V``: event ``j`` at ``t = L-1-j``.
    Padding sits at ``t >= L`` in both, after every real event, so it cannot reach a real output.
    """

    def __init__(self, lengths: torch.Tensor, T: int) -> None:
        t = torch.arange(T, device=lengths.device)[:, None]  # (T, 1)
        pad = (T - lengths)[None, :]  # (1, B)
        self.lengths = lengths  # (B,)
        self.full = bool((lengths == T).all())  # every row is a whole window: the mask is all true
        self.mask = t < lengths[None, :]  # (T, B)
        self.from_input_r = (t + pad) % T  # (T, B) source position in the left-padded row
        self.from_input_v = (T - 1 - t).expand_as(self.mask)  # (T, B) a plain flip
        self.reverse = torch.where(self.mask, lengths[None, :] - 1 - t, t)  # (T, B) R <-> V, an involution


class RecurrentLayer(nn.Module):
    """One (bi)directional recurrent layer: each direction reads its own real-first layout."""

    def __init__(self, cell: str, n_in: int, hidden: int, bidirectional: bool) -> None:
        super().__init__()
        rnn_cls = CELLS[cell]
        self.forward_rnn = rnn_cls(n_in, hidden)
        self.backward_rnn = rnn_cls(n_in, hidden) if bidirectional else None

    def forward(
        self, x_r: torch.Tensor, x_v: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        f_r, _ = self.forward_rnn(x_r)  # (T, B, H) forward states, layout R
        if self.backward_rnn is None or x_v is None:
            return f_r, None
        b_v, _ = self.backward_rnn(x_v)  # (T, B, H) backward states, layout V
        return f_r, b_v


class SequenceClassifier(nn.Module):
    """Window of events -> one fraud logit for the window's last event."""

    # zero columns appended to what the first recurrent layer reads (``even_inputs``); a class
    # attribute, so a network pickled before it existed still loads and scores
    input_pad: int = 0

    def __init__(self, cfg: SequenceModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        width = cfg.hidden * cfg.directions
        # Wide inputs (piecewise-linear bins) make the recurrence's input weights and their
        # backward pass the bulk of training; one shared projection, applied to each event
        # before the recurrence, is a low-rank factor of those weights for both directions.
        self.embed = nn.Linear(cfg.n_features, cfg.embed) if cfg.embed else None
        self.layers = nn.ModuleList(
            RecurrentLayer(cfg.cell, cfg.recurrent_inputs if i == 0 else width, cfg.hidden, cfg.bidirectional)
            for i in range(cfg.layers)
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Sequential(
            nn.Linear(3 * width + (cfg.n_features if cfg.skip else 0), cfg.head_hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.head_hidden, 1),
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        lengths = lengths.to(device=x.device, dtype=torch.long).clamp(1, T)  # (B,)
        lay = Layouts(lengths, T)
        x = x.contiguous()  # (B, T, F)
        # the projection maps padding rows to its bias; the recurrences never read them anyway
        e = self.embed(x) if self.embed is not None else x  # (B, T, E)
        device = e.device.type
        if torch.is_autocast_enabled(device):  # cast once: the layouts below copy it twice, at half the bytes
            e = e.to(torch.get_autocast_dtype(device))
        if self.input_pad:
            e = functional.pad(e, (0, self.input_pad))  # (B, T, E + pad), zeros that meet zero weights
        h_r = select_rows(e, lay.from_input_r, batch_major=True)  # (T, B, E)
        h_v = select_rows(e, lay.from_input_v, batch_major=True) if self.cfg.bidirectional else None
        f_r, b_v = self.layers[0](h_r, h_v)
        for layer in self.layers[1:]:
            # between layers only, like nn.LSTM(dropout=...); one mask per event for both directions
            f_r = self.dropout(f_r)  # (T, B, H)
            if b_v is None:
                f_r, b_v = layer(f_r, None)
                continue
            b_v = self.dropout(b_v)  # (T, B, H)
            h_r = torch.cat([f_r, select_rows(b_v, lay.reverse)], dim=-1)  # (T, B, 2H)
            h_v = torch.cat([select_rows(f_r, lay.reverse), b_v], dim=-1)  # (T, B, 2H)
            f_r, b_v = layer(h_r, h_v)
        pooled = self.pool(f_r, b_v, lay)  # (B, 3D)
        if self.cfg.skip:  # the scored transaction sits at position T - 1 of the left-padded input
            pooled = torch.cat([pooled, x[:, -1]], dim=-1)  # (B, 3D + F)
        # The head runs in fp32 even under bf16 autocast: it costs almost nothing, and in bf16 every
        # logit would be rounded to 8 significant bits, which ties many scores of a day.
        with torch.autocast(device_type=pooled.device.type, enabled=False):
            return self.head(pooled.float()).squeeze(-1)  # (B,)

    @staticmethod
    def pool(f_r: torch.Tensor, b_v: torch.Tensor | None, lay: Layouts) -> torch.Tensor:
        """[state at the scored transaction, masked mean, masked max] of the top layer.

        Mean and max ignore the order of events, so each direction is pooled in its own layout.
        The result is fp32 whatever the recurrence ran in, and sums accumulate in fp32: rounded
        in bf16 (under autocast) the plain and the masked sums below would differ, and a window's
        score would depend on whether its batch held a longer window. A max is exact anyway.
        """
        f32 = torch.float32
        batch = torch.arange(f_r.shape[1], device=f_r.device)  # (B,)
        last = [f_r[lay.lengths - 1, batch].to(f32)]  # (B, H) forward state after the whole window
        states = [f_r]
        if b_v is not None:
            last.append(b_v[0].to(f32))  # (B, H) backward state that has read only the transaction
            states.append(b_v)
        if lay.full:  # no padding anywhere (most scoring batches): plain reductions, no masked copies
            means = [h.sum(dim=0, dtype=f32) / h.shape[0] for h in states]  # (B, H) each
            peaks = [h.amax(dim=0).to(f32) for h in states]  # (B, H) each
            return torch.cat([*last, *means, *peaks], dim=-1)  # (B, 3D)
        mask = lay.mask[:, :, None]  # (T, B, 1)
        count = lay.lengths[:, None].to(f32)  # (B, 1)
        means = [torch.where(mask, h, 0.0).sum(dim=0, dtype=f32) / count for h in states]  # (B, H) each
        peaks = [torch.where(mask, h, torch.finfo(h.dtype).min).amax(dim=0).to(f32) for h in states]
        return torch.cat([*last, *means, *peaks], dim=-1)  # (B, 3D)


def even_inputs(model: SequenceClassifier) -> SequenceClassifier:
    """``model``, or where its first recurrent layer reads an odd number of inputs, a copy that
    reads one more: a zero column in every event, met by zero input weights. The copy computes
    the same function; it is for inference only (its state dict has other shapes).

    oneDNN runs a bf16 LSTM on AMX tiles only when the layer's input width is even. With the 27
    event features the first layer ran on AVX-512 kernels instead, and took longer than the
    second layer, which reads 64 inputs (``python -m bench.score_batch``, bench/notes.md).
    """
    import copy

    width = model.cfg.recurrent_inputs + model.input_pad
    if width % 2 == 0:
        return model
    padded = copy.deepcopy(model)
    layer = padded.layers[0]
    assert isinstance(layer, RecurrentLayer)
    for name in ("forward_rnn", "backward_rnn"):
        old = getattr(layer, name)
        if old is None:
            continue
        new = CELLS[model.cfg.cell](width + 1, model.cfg.hidden)
        new.to(device=old.weight_ih_l0.device, dtype=old.weight_ih_l0.dtype)
        with torch.no_grad():
            for key, value in old.named_parameters():  # only weight_ih_l0 is wider, by one column
                target = getattr(new, key)
                target.zero_()
                target[..., : value.shape[-1]] = value
        setattr(layer, name, new)
    padded.input_pad += 1
    return padded.train(model.training)


def build_model(cfg: SequenceModelConfig) -> SequenceClassifier:
    """The classifier for ``cfg``, freshly initialised from torch's global RNG."""
    return SequenceClassifier(cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

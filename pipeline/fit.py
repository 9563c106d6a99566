"""Train a ``SequenceClassifier`` on windows, with early stopping on validation average precision.

Pure in-memory fitting: arrays in, a model and its history out. Data loading, MLflow and the
champion gate live in the stages that call this.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.metrics import auc_roc, average_precision

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch

    from pipeline.ddp import Replicas
    from pipeline.model import SequenceClassifier, SequenceModelConfig

LossFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
LOSSES = ("bce", "focal")


@dataclass
class FitConfig:
    """How to train; stored with the run so that a fit can be repeated."""

    epochs: int = 8
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 1e-5
    loss: str = "bce"  # "bce" | "focal"
    pos_weight: float | None = None  # None: sqrt(neg / pos) of what an epoch trains on
    focal_gamma: float = 2.0
    patience: int = 3  # epochs without a better validation AP before stopping
    grad_clip: float = 1.0  # max gradient norm; <= 0 turns clipping off
    neg_per_pos: float | None = None  # None: every window; else all frauds + this many genuine per fraud
    amp: bool = False  # training in bf16 autocast on CUDA; ignored on CPU (scoring: FRAUDSEQ_SCORE_AMP)
    ema: float | None = None  # None: plain weights; else validate and keep an EMA of them with this decay

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("epochs, batch_size and patience must be >= 1")
        if self.pos_weight is not None and self.pos_weight <= 0:
            raise ValueError(f"pos_weight must be > 0, got {self.pos_weight}")
        if self.neg_per_pos is not None and self.neg_per_pos <= 0:
            raise ValueError(f"neg_per_pos must be > 0, got {self.neg_per_pos}")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise ValueError(f"ema must be in (0, 1), got {self.ema}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown fit config keys: {sorted(unknown)}")
        return cls(**d)


@dataclass
class FitResult:
    """The model with the weights of its best validation epoch, and how it got there."""

    model: SequenceClassifier
    best_epoch: int  # 1-based
    history: list[dict[str, float]]
    val_logits: np.ndarray  # of the best epoch, in the order of X_val
    train_windows_per_s: float
    pos_weight: float = 1.0


DEVICE_ENV = "FRAUDSEQ_DEVICE"
AMP_ENV = "FRAUDSEQ_SCORE_AMP"
ENGINE_ENV = "FRAUDSEQ_SCORE_ENGINE"


def pick_device(preference: str | None = None) -> torch.device:
    """The device to train and score on: ``preference``, else ``$FRAUDSEQ_DEVICE``, else ``auto``.

    ``auto`` is CUDA when torch sees a GPU, else the CPU; ``cpu``, ``cuda`` or ``cuda:N`` force
    one (asking for CUDA where there is none is a one-line usage error).
    """
    import os

    import torch

    from pipeline.errors import UsageError

    choice = (preference or os.environ.get(DEVICE_ENV) or "auto").strip().lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda" or choice.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UsageError(f"{DEVICE_ENV}={choice}: torch sees no CUDA device here (use auto or cpu)")
        return torch.device(choice)
    raise UsageError(f"{DEVICE_ENV}={choice!r}: use auto, cpu, cuda or cuda:N")


def score_amp(device: torch.device | None = None) -> bool:
    """Whether scoring on ``device`` (default: CPU) runs in bf16 autocast (``FRAUDSEQ_SCORE_AMP``).

    ``1`` (or true/yes) turns it on and ``0`` (false/no) off, on CUDA or CPU. Unset or ``auto``:
    on only where it was measured faster at the same AP, a CPU with native bf16 instructions
    (AVX512-BF16 or AMX) that oneDNN runs bf16 on (``python -m bench --rows model_bf16``: 1.5x
    the windows/s, AP within 0.0003 of fp32 on 3,569 held-out frauds). Other CPUs emulate bf16
    and are slower with it; on CUDA it has not been measured yet, so it stays off there.
    Training, early stopping and the gate always evaluate in fp32.
    """
    import os

    from pipeline.errors import UsageError

    choice = os.environ.get(AMP_ENV, "auto").strip().lower() or "auto"
    if choice in ("1", "true", "yes"):
        return True
    if choice in ("0", "false", "no"):
        return False
    if choice != "auto":
        raise UsageError(f"{AMP_ENV}={choice!r}: use auto, 1 or 0")
    on_cpu = device is None or device.type == "cpu"
    return on_cpu and cpu_has_native_bf16() and cpu_bf16_supported()


def score_engine(device: torch.device | None = None) -> str:
    """What runs the scoring forward pass on ``device``: ``torch`` or ``onnx`` (``FRAUDSEQ_SCORE_ENGINE``).

    ``onnx`` is ONNX Runtime in fp32 on the CPU (``pipeline.onnx_engine``); ``torch`` is the
    model itself, in bf16 autocast where ``score_amp`` says so. Unset or ``auto``: ONNX Runtime
    where it was measured faster, a CPU that scores in fp32 (no native bf16: 1.9x the windows/s
    of torch's fp32 on an AVX2-only host, logits within 1e-7), when onnxruntime is installed;
    torch on CUDA and where bf16 autocast is on. ``onnx`` on a CUDA device is a usage error.
    """
    import os

    from pipeline.errors import UsageError

    choice = os.environ.get(ENGINE_ENV, "auto").strip().lower() or "auto"
    on_cpu = device is None or device.type == "cpu"
    if choice == "torch":
        return "torch"
    if choice == "onnx":
        if not on_cpu:
            raise UsageError(f"{ENGINE_ENV}=onnx runs on the CPU only; set FRAUDSEQ_DEVICE=cpu or use torch")
        return "onnx"
    if choice != "auto":
        raise UsageError(f"{ENGINE_ENV}={choice!r}: use auto, torch or onnx")
    from pipeline.onnx_engine import available

    return "onnx" if on_cpu and not score_amp(device) and available() else "torch"


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX), from /proc/cpuinfo's flags."""
    from pathlib import Path

    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no way to tell, so no
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# ---- losses ----


def default_pos_weight(n_pos: int, n_neg: int) -> float:
    """sqrt(neg/pos): enough to keep frauds in view without flattening the probabilities."""
    if n_pos == 0 or n_neg == 0:
        return 1.0
    return float(np.sqrt(n_neg / n_pos))


def focal_loss(logits: torch.Tensor, y: torch.Tensor, gamma: float, pos_weight: float = 1.0) -> torch.Tensor:
    """Mean binary focal loss (Lin et al. 2017), frauds weighted by ``pos_weight``.

    ``-w y (1-p)^g log p - (1-y) p^g log(1-p)``, from log-sigmoids so large logits stay finite.
    With ``gamma = 0`` it equals ``BCEWithLogitsLoss(pos_weight=...)``.
    """
    import torch
    import torch.nn.functional as F

    log_p = F.logsigmoid(logits)  # (B,)
    log_q = F.logsigmoid(-logits)  # (B,) log(1 - p)
    pos = -pos_weight * y * torch.exp(gamma * log_q) * log_p  # (B,)
    neg = -(1 - y) * torch.exp(gamma * log_p) * log_q  # (B,)
    return (pos + neg).mean()


def make_loss(cfg: FitConfig, pos_weight: float) -> LossFn:
    """The training loss as a function of (logits, y)."""
    import torch

    if cfg.loss == "focal":
        return lambda logits, y: focal_loss(logits, y, cfg.focal_gamma, pos_weight)
    bce = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))
    return lambda logits, y: bce(logits, y.to(logits.dtype))


# ---- batching ----


def length_bucketed_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None = None, chunk_batches: int = 32
) -> list[np.ndarray]:
    """Index batches of windows with similar lengths, so each batch can be trimmed to its longest.

    With ``rng`` (training): shuffle, sort by length inside chunks of ``chunk_batches`` batches,
    then shuffle the batch order, so batches stay random but rarely mix short and long windows.
    Without ``rng`` (inference): one stable sort by length.
    """
    n = len(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        # whole-length windows get batches of their own: with no padding in a batch the model
        # skips its masked pooling (``Layouts.full``), and most scoring windows are whole
        cut = int(np.searchsorted(lengths[order], lengths.max(), side="left")) if n else 0
        return [
            part[i : i + batch_size]
            for part in (order[:cut], order[cut:])
            for i in range(0, len(part), batch_size)
        ]
    order = rng.permutation(n)
    chunk = batch_size * chunk_batches
    batches: list[np.ndarray] = []
    for start in range(0, n, chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def epoch_sample(y: np.ndarray, neg_per_pos: float | None, rng: np.random.Generator) -> np.ndarray:
    """Indices one epoch trains on: all of them, or all frauds plus a fresh draw of genuine ones."""
    if neg_per_pos is None:
        return np.arange(len(y))
    pos = np.flatnonzero(y == 1)
    neg = np.flatnonzero(y != 1)
    n_neg = min(len(neg), max(1, round(neg_per_pos * len(pos))))
    return np.sort(np.concatenate([pos, rng.choice(neg, size=n_neg, replace=False)]))


def to_tensors(
    X: np.ndarray,
    lengths: np.ndarray,
    idx: np.ndarray,
    device: torch.device,
    transform: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch, cut to its longest window (the left padding beyond it carries nothing).

    ``transform(x, lengths)`` may rewrite the batch's own float32 copy in place (scaling).
    """
    import torch

    width = int(lengths[idx].max())
    lens = np.asarray(lengths[idx], dtype=np.int64)
    x = np.ascontiguousarray(X[idx, X.shape[1] - width :], dtype=np.float32)  # (B, width, F), a copy
    if transform is not None:
        x = transform(x, lens)
    xt = torch.from_numpy(x)
    if device.type == "cuda":
        xt = xt.pin_memory()
    return xt.to(device, non_blocking=True), torch.from_numpy(lens).to(device)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on ``device`` (CUDA or CPU) when ``enabled``, else nothing.

    On CPU it pays only where the cores have bf16 instructions (AVX512-BF16 or AMX); elsewhere
    oneDNN emulates them and it is slower than fp32. On a CPU where oneDNN cannot run bf16 at
    all (no AVX-512, e.g. an AVX2-only host), where its LSTM would fail to build, it stays in
    fp32 and logs a warning once: a nightly run moved to such a host still scores.
    """
    import torch

    if not enabled or device.type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    if device.type == "cpu" and not cpu_bf16_supported():
        _warn_no_cpu_bf16()
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def cpu_bf16_supported() -> bool:
    """Whether oneDNN can run bf16 kernels on this CPU (native or emulated on AVX-512)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


@functools.cache
def _warn_no_cpu_bf16() -> None:
    log.warning("bf16 scoring asked (%s), but this CPU cannot run bf16: scoring in fp32", AMP_ENV)


WIDE_INPUTS = 4  # first-layer inputs per hidden unit from which ATen's own CPU kernels train faster


def training_kernels(
    device: torch.device, cfg: SequenceModelConfig
) -> contextlib.AbstractContextManager[Any]:
    """For CPU training of a model with wide inputs, ATen's own recurrent kernels instead of oneDNN's.

    oneDNN's RNN backward always computes the gradient of the layer's input, which the first
    layer never needs; with inputs ``WIDE_INPUTS`` times wider than the hidden state that is
    most of the backward pass. ATen's kernels project the inputs in one matmul and autograd
    skips that gradient. Measured by ``python -m bench.training_kernels`` on the 2-core machine:
    225 inputs, hidden 32: about 1.6x the windows/s; 40 inputs, hidden 64: about 0.8x, so narrow
    models keep oneDNN. Inference always keeps oneDNN (faster there for every shape measured).
    The same computation either way; the choice depends on the config alone, so a seed still
    repeats exactly.
    """
    if device.type != "cpu" or cfg.recurrent_inputs < WIDE_INPUTS * cfg.hidden:
        return contextlib.nullcontext()
    return aten_kernels()


def aten_kernels() -> contextlib.AbstractContextManager[Any]:
    """oneDNN off for the block: recurrent layers run on ATen's own CPU kernels; restored after."""
    import torch

    return torch.backends.mkldnn.flags(
        enabled=False, deterministic=None, allow_tf32=None, fp32_precision=None
    )


# ---- inference ----


def predict_logits(
    model: SequenceClassifier,
    X: np.ndarray,
    lengths: np.ndarray,
    batch_size: int = 4096,
    device: torch.device | None = None,
    amp: bool = False,
    transform: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Logits for every window, in the order of ``X``; eval mode, length-bucketed batches.

    ``device`` None keeps the model where it is. ``transform`` is applied to each batch's copy
    (see ``to_tensors``), so callers can scale windows without a second full array.
    """
    check_windows(X, lengths)
    T = X.shape[1]

    def batch(idx: np.ndarray, width: int) -> np.ndarray:
        return np.ascontiguousarray(X[idx, T - width :], dtype=np.float32)  # (B, width, F), a copy

    return predict_logits_from(model, batch, np.asarray(lengths), batch_size, device, amp, transform)


def predict_logits_from(
    model: SequenceClassifier,
    batch: Callable[[np.ndarray, int], np.ndarray],
    lengths: np.ndarray,
    batch_size: int = 4096,
    device: torch.device | None = None,
    amp: bool = False,
    transform: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Logits of N windows that ``batch(idx, width)`` makes on demand as fresh (B, width, F) arrays.

    The windows are never all in memory at once; ``transform`` may rewrite each batch in place.
    """
    import torch

    device = device or next(model.parameters()).device
    model.to(device).eval()
    if amp and device.type == "cpu" and cpu_bf16_supported():
        from pipeline.model import even_inputs

        model = even_inputs(model)  # oneDNN's bf16 LSTM runs on AMX only with an even input width
    out = np.empty(len(lengths), dtype=np.float32)
    with torch.inference_mode(), autocast(device, amp):
        for idx in length_bucketed_batches(lengths, batch_size):
            lens = np.asarray(lengths[idx], dtype=np.int64)
            x = batch(idx, int(lens.max()))
            if transform is not None:
                x = transform(x, lens)
            xt = torch.from_numpy(x)
            if device.type == "cuda":
                xt = xt.pin_memory()
            logits = model(xt.to(device, non_blocking=True), torch.from_numpy(lens).to(device))
            out[idx] = logits.float().cpu().numpy()
    return out


def check_windows(X: np.ndarray, lengths: np.ndarray, y: np.ndarray | None = None) -> None:
    if X.ndim != 3:
        raise ValueError(f"X must be (N, T, F), got shape {X.shape}")
    if len(lengths) != len(X) or (y is not None and len(y) != len(X)):
        raise ValueError("X, lengths and y must have the same number of windows")
    if len(lengths) and (np.min(lengths) < 1 or np.max(lengths) > X.shape[1]):
        raise ValueError(f"lengths must be in 1..{X.shape[1]}")


# ---- training ----


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seed torch and switch on deterministic kernels for the fit, then restore the global flag."""
    import torch

    torch.manual_seed(seed)
    was_on = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_on, warn_only=was_warn)


def progress_bar(enabled: bool) -> Any:
    """A rich progress bar on stderr, so stdout stays clean for ``--json``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=True,
    )


def train_epoch(
    model: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    loss_fn: LossFn,
    batches: list[np.ndarray],
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
    cfg: FitConfig,
    device: torch.device,
    advance: Callable[[], None],
    replicas: Replicas | None = None,
    after_step: Callable[[], None] | None = None,
) -> float:
    """One pass over ``batches``; returns the mean training loss per window.

    ``after_step`` runs after every optimiser step (the weight average's update).

    With ``replicas`` each global batch is split across the ranks and each rank's loss is scaled
    by its share, so DDP's gradient average equals the gradient of the whole batch.
    """
    import torch

    X, lengths, y = data
    model.train()
    total, count = 0.0, 0
    for idx in batches:
        local, scale = replicas.local_batch(idx) if replicas is not None else (idx, 1.0)
        x, lens = to_tensors(X, lengths, local, device)
        target = torch.from_numpy(y[local].astype(np.float32)).to(device)  # (B,)
        with autocast(device, cfg.amp and device.type == "cuda"):  # training: bf16 on CUDA only
            logits = model(x, lens)  # (B,)
        loss = loss_fn(logits.float(), target) * scale
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimiser.step()
        if after_step is not None:
            after_step()
        total += float(loss.detach()) * len(idx)
        count += len(idx)
        advance()
    return total / max(count, 1) if replicas is None else replicas.mean(total, count)


def weight_average(model: torch.nn.Module, decay: float | None) -> Any:
    """An ``AveragedModel`` holding the EMA of ``model``'s weights (and buffers), or None."""
    if decay is None:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def validation_loss(loss_fn: LossFn, logits: np.ndarray, y: np.ndarray) -> float:
    import torch

    with torch.inference_mode():
        return float(loss_fn(torch.from_numpy(logits), torch.from_numpy(y.astype(np.float32))))


def fit_sequence_model(
    X_tr: np.ndarray,
    len_tr: np.ndarray,
    y_tr: np.ndarray,
    X_val: np.ndarray,
    len_val: np.ndarray,
    y_val: np.ndarray,
    model_cfg: SequenceModelConfig,
    fit_cfg: FitConfig,
    seed: int = 0,
    device: torch.device | None = None,
    progress: bool = True,
    replicas: Replicas | None = None,
) -> FitResult:
    """Train with AdamW and keep the weights of the epoch with the best validation AP.

    With ``fit_cfg.ema`` an exponential moving average of the weights (updated after every step,
    ``torch.optim.swa_utils``) is what each epoch validates and what the best epoch keeps: it
    smooths the last steps' noise, as an ensemble of nearby weights would, at no extra forward
    pass in training.

    Deterministic on CPU for a ``seed``: torch is seeded once before the weights are drawn, and
    every shuffle comes from one ``numpy`` Generator. If the validation windows hold a single
    class, AP is undefined and the epoch with the lowest validation loss is kept instead.
    With ``replicas`` (one rank of a torchrun job, see ``pipeline.ddp``) the model trains under
    DistributedDataParallel and every rank keeps the epoch that rank 0 chose.
    """
    import torch

    from pipeline.model import build_model

    check_windows(X_tr, len_tr, y_tr)
    check_windows(X_val, len_val, y_val)
    device = device or pick_device()
    y_tr = np.asarray(y_tr).astype(np.int64)
    y_val = np.asarray(y_val).astype(np.int64)
    rng = np.random.default_rng(seed)
    with deterministic(seed), progress_bar(progress) as bar:
        model = build_model(model_cfg).to(device)
        net = replicas.wrap(model) if replicas is not None else model
        averaged = weight_average(model, fit_cfg.ema)
        kept = averaged.module if averaged is not None else model  # what is validated and kept
        optimiser = torch.optim.AdamW(model.parameters(), lr=fit_cfg.lr, weight_decay=fit_cfg.weight_decay)
        n_pos = int(y_tr.sum())
        n_neg = len(y_tr) - n_pos
        if fit_cfg.neg_per_pos is not None:
            n_neg = min(n_neg, round(fit_cfg.neg_per_pos * n_pos))
        pos_weight = fit_cfg.pos_weight or default_pos_weight(n_pos, n_neg)
        loss_fn = make_loss(fit_cfg, pos_weight)
        single_class = len(np.unique(y_val)) < 2

        history: list[dict[str, float]] = []
        best: tuple[float, int, dict[str, torch.Tensor], np.ndarray] | None = None
        seen, train_seconds = 0, 0.0
        task = bar.add_task("training", total=None)
        for epoch in range(1, fit_cfg.epochs + 1):
            sample = epoch_sample(y_tr, fit_cfg.neg_per_pos, rng)
            batches = [sample[b] for b in length_bucketed_batches(len_tr[sample], fit_cfg.batch_size, rng)]
            bar.reset(task, total=len(batches), description=f"epoch {epoch}/{fit_cfg.epochs}")
            started = time.perf_counter()
            with training_kernels(device, model_cfg):
                train_loss = train_epoch(
                    net,
                    optimiser,
                    loss_fn,
                    batches,
                    (X_tr, len_tr, y_tr),
                    fit_cfg,
                    device,
                    lambda: bar.advance(task),
                    replicas=replicas,
                    after_step=(lambda: averaged.update_parameters(model)) if averaged is not None else None,
                )
            seconds = time.perf_counter() - started
            seen, train_seconds = seen + len(sample), train_seconds + seconds

            predict = replicas.predict_logits if replicas is not None else predict_logits
            val_logits = predict(
                kept, X_val, len_val, device=device, amp=fit_cfg.amp and device.type == "cuda"
            )
            row = {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": validation_loss(loss_fn, val_logits, y_val),
                "val_average_precision": average_precision(y_val, val_logits),
                "val_auc_roc": auc_roc(y_val, val_logits),
                "seconds": seconds,
                "windows_per_s": len(sample) / seconds,
            }
            history.append(row)
            score = -row["val_loss"] if single_class else row["val_average_precision"]
            improved = best is None or score > best[0]
            if replicas is not None:
                improved = replicas.agree(improved)  # rank 0 decides, so no rank stops alone
            if improved or best is None:
                state = {k: v.detach().clone() for k, v in kept.state_dict().items()}
                best = (score, epoch, state, val_logits)
            elif epoch - best[1] >= fit_cfg.patience:
                break

    assert best is not None  # at least one epoch ran
    _, best_epoch, state, best_logits = best
    model.load_state_dict(state)
    model.eval()
    return FitResult(
        model=model,
        best_epoch=best_epoch,
        history=history,
        val_logits=best_logits,
        train_windows_per_s=seen / max(train_seconds, 1e-9),
        pos_weight=pos_weight,
    )

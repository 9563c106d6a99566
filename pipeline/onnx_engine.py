"""CPU scoring through ONNX Runtime: the same network, exported once per process, run in fp32.

On a CPU without bf16 instructions (AVX2 only) torch's fp32 recurrence runs at about 19% of the
matmul peak; ONNX Runtime's LSTM kernels ran the same production windows 1.9x as fast there
(``python -m bench --rows model_onnx``), with logits within 1e-7 of torch's. Scoring picks the
engine with ``FRAUDSEQ_SCORE_ENGINE`` (``pipeline.fit.score_engine``).

Two graphs are exported, and both read whole ``window``-wide, left-padded windows:

- the general one, traced on a batch holding a short window: the masked path of
  ``SequenceClassifier.forward`` (masked pooling), for windows shorter than ``window``;
- the whole-window one, traced on whole windows only: the same network without the masks
  (no ``Where`` over every state), for windows of ``window`` events, most of a day's.

Each window goes to a graph by its own length, never by what else is in its batch, so a window's
score does not depend on its batch. For a whole window the two graphs give the same logit (tested).
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pipeline.model import SequenceClassifier

OPSET = 17


class OnnxScorer:
    """``SequenceClassifier`` exported to ONNX, run by ONNX Runtime on ``threads`` CPU threads."""

    def __init__(
        self,
        net: SequenceClassifier,
        window: int,
        threads: int | None = None,
        graph: bytes | None = None,
        whole_graph: bytes | None = None,
    ) -> None:
        """``graph``, ``whole_graph``: the general and whole-window ONNX bytes saved with the bundle
        (``export_graph``); None exports that one now."""
        import onnxruntime as ort
        import torch

        self.window = window
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        graph = graph if graph is not None else export_graph(net, window)
        whole_graph = whole_graph if whole_graph is not None else export_graph(net, window, whole=True)
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.whole_session = ort.InferenceSession(whole_graph, options, providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Logits of (B, window, F) left-padded windows with their real ``lengths``."""
        if x.ndim != 3 or x.shape[1] != self.window:
            raise ValueError(f"ONNX scoring reads whole windows of {self.window} events, got shape {x.shape}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        lengths = np.asarray(lengths, dtype=np.int64)
        whole = lengths >= self.window
        if whole.all():
            return self._run(self.whole_session, x, lengths)
        if not whole.any():
            return self._run(self.session, x, lengths)
        out = np.empty(len(lengths), dtype=np.float32)
        out[whole] = self._run(self.whole_session, x[whole], lengths[whole])
        out[~whole] = self._run(self.session, x[~whole], lengths[~whole])
        return out

    @staticmethod
    def _run(session: object, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        feed = {"x": np.ascontiguousarray(x), "lengths": lengths}
        return np.asarray(session.run(None, feed)[0], dtype=np.float32)  # type: ignore[attr-defined]


def export_graph(net: SequenceClassifier, window: int, whole: bool = False) -> bytes:
    """The network as ONNX bytes, traced on CPU in eval mode for ``window``-wide windows (about 1 s).

    ``whole``: the graph for whole windows only (traced on whole windows: no masks); otherwise the
    general graph (traced with one short window: the masked path), right for any length.
    """
    import torch

    example = torch.zeros(2, window, net.cfg.n_features)
    lengths = torch.tensor([window, window if whole else 1])
    was_training = net.training
    net = net.cpu().eval()
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent branches
        path = Path(folder) / "model.onnx"
        torch.onnx.export(
            net,
            (example, lengths),
            path,
            input_names=["x", "lengths"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "lengths": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
        graph = path.read_bytes()
    net.train(was_training)
    return graph


def onnx_logits(
    scorer: OnnxScorer,
    batch: Callable[[np.ndarray, int], np.ndarray],
    lengths: np.ndarray,
    batch_size: int,
    transform: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Logits of N windows that ``batch(idx, window)`` makes on demand (see ``predict_logits_from``)."""
    from pipeline.fit import length_bucketed_batches

    lengths = np.asarray(lengths)
    out = np.empty(len(lengths), dtype=np.float32)
    for idx in length_bucketed_batches(lengths, batch_size):
        lens = np.asarray(lengths[idx], dtype=np.int64)
        x = batch(idx, scorer.window)
        if transform is not None:
            x = transform(x, lens)
        out[idx] = scorer(x, lens)
    return out


def available() -> bool:
    """Whether ONNX Runtime can be imported here."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True

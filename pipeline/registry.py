"""The model bundle (weights, config, normaliser, calibrator) and the MLflow registry around it.

A registered version is a pyfunc whose artifacts are the bundle folder, so any MLflow
client can load it, and fraudseq loads it back as a ``ModelBundle`` for fast scoring
and attribution. Models are only ever loaded from the registry (contract section 5): a DAG
run's workers load the version it pinned from a copy of the registry's bytes that the run staged
and that they check against its digests (``stage_bundle``, ``load_staged``).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from features.windows import Normaliser
from pipeline.errors import MissingInputError, UsageError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from pipeline.config import Settings
    from pipeline.model import SequenceClassifier
    from pipeline.onnx_engine import OnnxScorer

CHAMPION = "champion"
# Windows per forward pass when scoring. On CPU a batch of 1,024 windows keeps each LSTM step's
# states and gates in the core's cache: with the hidden-32 production model, gather plus model ran
# 1.13-1.28x faster in bf16 than with 4,096, and 1.49-1.53x in fp32, a gain that the model rows
# did not always see (python -m bench.score_batch, 2026-12-08, bench/notes.md). On a GPU larger
# batches keep the device busy.
SCORE_BATCH = 1_024
SCORE_BATCH_CUDA = 16_384


def score_batch(device: Any) -> int:
    """Windows per scoring batch on ``device`` (a ``torch.device``)."""
    return SCORE_BATCH_CUDA if getattr(device, "type", "cpu") == "cuda" else SCORE_BATCH


_URI = re.compile(
    r"^models:/(?P<name>[A-Za-z0-9][A-Za-z0-9_.\-]{0,255})(?:@(?P<alias>[A-Za-z0-9_\-]{1,255})|/(?P<version>[0-9]{1,9}))$"
)


@dataclass
class ModelBundle:
    """Everything needed to turn raw feature windows into calibrated probabilities."""

    net: SequenceClassifier
    model_config: dict[str, Any]
    normaliser: Normaliser
    calibrator: dict[str, Any]
    window: int
    drift_reference: dict[str, Any] | None = None  # pipeline.drift bins fixed at training
    # the network as ONNX (pipeline.onnx_engine.export_graph), saved with the bundle when it is written
    onnx_graph: bytes | None = field(default=None, repr=False, compare=False)
    onnx_whole_graph: bytes | None = field(default=None, repr=False, compare=False)  # whole windows only
    _onnx: OnnxScorer | None = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (MLflow's pyfunc wrapper) without the ONNX Runtime session, which is rebuilt on use."""
        return {**self.__dict__, "_onnx": None}

    def logits(
        self,
        windows: np.ndarray,
        lengths: np.ndarray,
        batch_size: int | None = None,
        amp: bool | None = None,
    ) -> np.ndarray:
        """Raw logits for windows of raw (un-normalised) features.

        Batches hold ``score_batch(device)`` windows unless ``batch_size`` is given. Each length
        bucket is cut, copied and scaled on its own (``predict_logits``'s ``transform``), so no
        second (N, W, F) array is made; on a GPU (``pipeline.fit.pick_device``) the forward pass
        runs there. ``amp`` None follows ``FRAUDSEQ_SCORE_AMP`` (``pipeline.fit.score_amp``);
        False is plain fp32, which is how models are compared (the gate).
        """
        from pipeline.fit import pick_device, predict_logits, score_amp
        from pipeline.onnx_engine import onnx_logits

        def scale(x: np.ndarray, lens: np.ndarray) -> np.ndarray:
            return self.normaliser.transform_windows(x, lens, inplace=True)

        device = pick_device()
        batch_size = batch_size or score_batch(device)
        # an explicit amp asks for torch (the gate's fp32 comparison); ONNX reads whole windows
        scorer = self.onnx_scorer(device) if amp is None and windows.shape[1] == self.window else None
        if scorer is not None:

            def whole(idx: np.ndarray, width: int) -> np.ndarray:
                return np.asarray(windows[idx], dtype=np.float32)  # (B, W, F), a copy to scale in place

            return onnx_logits(scorer, whole, lengths, batch_size, scale)
        return predict_logits(
            self.net,
            windows,
            lengths,
            batch_size=batch_size,
            device=device,
            amp=score_amp(device) if amp is None else amp,
            transform=scale,
        )

    def predict_rows(
        self, matrix: np.ndarray, starts: np.ndarray, rows: np.ndarray, batch_size: int | None = None
    ) -> np.ndarray:
        """``predict_proba`` of the windows ending at event rows ``rows``, gathered batch by batch.

        Equal to ``predict_proba(*gather_windows(matrix, starts, rows, self.window))`` without ever
        holding all N windows: memory is one batch, not N x W x F floats.
        """
        return self.calibrate(self.logits_rows(matrix, starts, rows, batch_size))

    def logits_rows(
        self, matrix: np.ndarray, starts: np.ndarray, rows: np.ndarray, batch_size: int | None = None
    ) -> np.ndarray:
        """Raw logits of the windows ending at event rows ``rows`` (see ``predict_rows``)."""
        from features.windows import WindowGatherer
        from pipeline.fit import pick_device, predict_logits_from, score_amp
        from pipeline.onnx_engine import onnx_logits

        rows = np.asarray(rows, dtype=np.int64)
        gatherer = WindowGatherer(matrix, starts, self.window)
        lengths = gatherer.lengths(rows)

        def batch(idx: np.ndarray, width: int) -> np.ndarray:
            x = gatherer.gather(rows[idx])  # (B, W, F), a fresh array
            return x if width == self.window else np.ascontiguousarray(x[:, self.window - width :])

        def scale(x: np.ndarray, lens: np.ndarray) -> np.ndarray:
            return self.normaliser.transform_windows(x, lens, inplace=True)

        device = pick_device()
        scorer = self.onnx_scorer(device)
        if scorer is not None:
            return onnx_logits(scorer, batch, lengths, batch_size or score_batch(device), scale)
        return predict_logits_from(
            self.net,
            batch,
            lengths,
            batch_size or score_batch(device),
            device,
            score_amp(device),
            transform=scale,
        )

    def onnx_scorer(self, device: Any) -> OnnxScorer | None:
        """The network in ONNX Runtime when ``score_engine(device)`` says so (exported once), else None."""
        from pipeline.fit import score_engine
        from pipeline.onnx_engine import OnnxScorer

        if score_engine(device) != "onnx":
            return None
        if self._onnx is None:
            self._onnx = OnnxScorer(
                self.net, self.window, graph=self.onnx_graph, whole_graph=self.onnx_whole_graph
            )
        return self._onnx

    def normalise_windows(self, windows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.normaliser.transform_windows(windows, lengths)

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        from pipeline.calibration import calibrator_from_dict

        return calibrator_from_dict(self.calibrator).transform(logits)

    def predict_proba(self, windows: np.ndarray, lengths: np.ndarray, amp: bool | None = None) -> np.ndarray:
        return self.calibrate(self.logits(windows, lengths, amp=amp))

    def save(self, folder: Path) -> Path:
        import torch

        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), folder / "weights.pt")
        meta = {
            "model_config": self.model_config,
            "normaliser": self.normaliser.to_dict(),
            "calibrator": self.calibrator,
            "window": self.window,
            "drift_reference": self.drift_reference,
        }
        (folder / "bundle.json").write_text(json.dumps(meta, indent=2))
        self.save_onnx(folder)
        return folder

    def save_onnx(self, folder: Path) -> None:
        """Write ``model.onnx`` and ``model-whole.onnx`` (``pipeline.onnx_engine``'s general and
        whole-window graphs) beside the weights, so scoring with ONNX Runtime need not export them.

        Without onnxruntime installed, or if the export fails, the bundle is saved without it
        and ONNX scoring (if asked for) exports the network when it first scores.
        """
        from pipeline.onnx_engine import available, export_graph

        if not available():
            return
        try:
            self.onnx_graph = self.onnx_graph or export_graph(self.net, self.window)
            self.onnx_whole_graph = self.onnx_whole_graph or export_graph(self.net, self.window, whole=True)
        except Exception as exc:  # noqa: BLE001 - an optional artefact must not fail training
            log.warning("model.onnx not saved with the bundle (%s: %s)", type(exc).__name__, exc)
            return
        (folder / "model.onnx").write_bytes(self.onnx_graph)
        (folder / "model-whole.onnx").write_bytes(self.onnx_whole_graph)

    @classmethod
    def load(cls, folder: Path) -> ModelBundle:
        import torch

        from pipeline.model import SequenceModelConfig, build_model

        meta = json.loads((Path(folder) / "bundle.json").read_text())
        net = build_model(SequenceModelConfig.from_dict(meta["model_config"]))
        state = torch.load(Path(folder) / "weights.pt", map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        net.eval()
        graph, whole = Path(folder) / "model.onnx", Path(folder) / "model-whole.onnx"
        return cls(
            net,
            meta["model_config"],
            Normaliser.from_dict(meta["normaliser"]),
            meta["calibrator"],
            int(meta["window"]),
            meta.get("drift_reference"),
            graph.read_bytes() if graph.is_file() else None,
            whole.read_bytes() if whole.is_file() else None,
        )


def _pyfunc_class() -> type:
    import mlflow.pyfunc

    class FraudseqPyfunc(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
        """pyfunc face of a bundle: input (N, W, F) raw windows, output fraud probabilities."""

        def load_context(self, context: Any) -> None:
            self.bundle = ModelBundle.load(Path(context.artifacts["bundle"]))

        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]  # MLflow reads hints
            x = np.asarray(model_input, dtype=np.float32)
            real = x[:, :, self.bundle.normaliser.feature_names.index("is_real")] > 0.5
            return self.bundle.predict_proba(x, real.sum(axis=1).astype(np.int64))

    return FraudseqPyfunc


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """(name, alias, version) of a registry URI; anything else is a usage error."""
    m = _URI.match(uri)
    if not m:
        raise UsageError(f"--model-uri {uri!r}: only models:/NAME@ALIAS or models:/NAME/VERSION are accepted")
    return m["name"], m["alias"], m["version"]


def log_bundle(bundle: ModelBundle, example: np.ndarray, workdir: Path) -> str:
    """Log the bundle as a pyfunc model in the active run; returns the model URI."""
    import torch
    from mlflow.models import infer_signature

    import mlflow

    folder = bundle.save(workdir / "bundle")
    pyfunc = _pyfunc_class()()
    pyfunc.bundle = bundle
    signature = infer_signature(
        example, bundle.predict_proba(example, (example[:, :, _real_index(bundle)] > 0.5).sum(1))
    )
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=pyfunc,
        artifacts={"bundle": str(folder)},
        signature=signature,
        input_example=example[:2],
        pip_requirements=[
            f"torch=={torch.__version__.split('+')[0]}",
            f"mlflow=={mlflow.__version__}",
            "numpy",
            "polars",
        ],
        code_paths=[
            str(Path(__file__).resolve().parents[1] / "features"),
            str(Path(__file__).resolve().parent),
        ],
    )
    return str(info.model_uri)


def _real_index(bundle: ModelBundle) -> int:
    return bundle.normaliser.feature_names.index("is_real")


def register(
    model_uri: str, name: str, run_id: str, tags: dict[str, str] | None = None, description: str = ""
) -> str:
    """Register ``model_uri`` as a new version of ``name``; returns the version number."""
    import mlflow
    from mlflow import MlflowClient

    mv = mlflow.register_model(model_uri, name, tags=tags)
    client = MlflowClient()
    if description:
        client.update_model_version(name, mv.version, description=description)
    client.set_model_version_tag(name, mv.version, "run_id", run_id)
    return str(mv.version)


def champion_version(name: str) -> str | None:
    """The version carrying the ``champion`` alias, or None."""
    from mlflow.exceptions import MlflowException

    from mlflow import MlflowClient

    try:
        return str(MlflowClient().get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def promote(name: str, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(name, CHAMPION, version)


def resolve_version(uri: str | None, default_name: str) -> tuple[str, str]:
    """Pin a URI (or the champion of ``default_name``) to (name, version), once."""
    from mlflow.exceptions import MlflowException

    from mlflow import MlflowClient

    name, alias, version = parse_model_uri(uri) if uri else (default_name, CHAMPION, None)
    if version is not None:
        return name, version
    try:
        mv = MlflowClient().get_model_version_by_alias(name, alias or CHAMPION)
    except MlflowException as exc:
        raise MissingInputError(
            f"model {name}@{alias}: no such registered model alias (train first)"
        ) from exc
    return name, str(mv.version)


def load_bundle(name: str, version: str) -> ModelBundle:
    """Load a registered version's bundle (through the registry, never a local path)."""
    return ModelBundle.load(Path(_download(name, version)) / "artifacts" / "bundle")


# The files of a bundle folder (``ModelBundle.save``); the ONNX graphs are optional.
BUNDLE_FILES = ("bundle.json", "weights.pt", "model.onnx", "model-whole.onnx")
STAGED_MANIFEST = "manifest.json"
STAGED_PIN = "pinned"  # rewritten by every pin of a staged copy: its time is the copy's last use
STAGED_KEEP_DAYS = 7  # a staged copy no run pinned for this long is removed by the next pin


def _staged_folder(manifest: bytes) -> str:
    """The name of a staged copy's folder: its manifest's digest, so the folder names its bytes."""
    import hashlib

    return hashlib.sha256(manifest).hexdigest()[:16]


def stage_bundle(settings: Settings, name: str, version: str) -> str:
    """Copy a registered version's bundle from the registry to the shared location; its URL.

    A DAG run's pin task stages the version it pinned, and its shard and finalise tasks load
    that copy (``load_staged``): each task is a fresh process, and importing MLflow and
    downloading through it cost about 2.3 s of a worker's 3.5 s to load the model (2026-12-07).
    The copy is the registry's bytes, named by their digest, with a manifest written last; a
    later run that pins the same bytes finds them there and rewrites only the small ``pinned``
    file (a damaged copy is written again). Staged copies that no run pinned for
    ``STAGED_KEEP_DAYS`` are then removed (``prune_staged``).
    """
    import hashlib
    import tempfile

    from pipeline import shared

    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(_download(name, version, tmp)) / "artifacts" / "bundle"
        files = {f: (bundle / f).read_bytes() for f in BUNDLE_FILES if (bundle / f).is_file()}
    manifest = {
        "model_name": name,
        "model_version": str(version),
        "files": {f: hashlib.sha256(data).hexdigest() for f, data in files.items()},
    }
    text = json.dumps(manifest, sort_keys=True).encode()
    url = f"{settings.shared_location}/models/{name}/version={version}/{_staged_folder(text)}"
    urls = [f"{url}/{f}" for f in files]
    if shared.read_existing([*urls, f"{url}/{STAGED_MANIFEST}"]) != [*files.values(), text]:  # else: as is
        for f, data in files.items():
            shared.put_atomic(data, f"{url}/{f}")
        shared.put_atomic(text, f"{url}/{STAGED_MANIFEST}")  # last: a reader needs it whole
    shared.put_atomic(_utcnow().isoformat().encode(), f"{url}/{STAGED_PIN}")
    prune_staged(settings, keep=url)
    return url


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def prune_staged(settings: Settings, keep: str, now: datetime | None = None) -> list[str]:
    """Remove the staged copies under ``models/`` that no run pinned for ``STAGED_KEEP_DAYS``
    (by their ``pinned`` file's time, or their manifest's where a copy has none), except
    ``keep``; the URLs of those removed.

    Runs take minutes and ``fraudseq_score`` runs one at a time, so a copy a live run reads was
    pinned moments ago. A copy left half-written (no manifest) stays: the next pin of the same
    bytes completes it.
    """
    import fsspec

    from pipeline import shared

    root = f"{settings.shared_location}/models"
    fs, path = fsspec.core.url_to_fs(root)
    cutoff = (now or _utcnow()) - timedelta(days=STAGED_KEEP_DAYS)
    removed = []
    for manifest in sorted(fs.glob(f"{path}/*/version=*/*/{STAGED_MANIFEST}")):
        folder = manifest.rsplit("/", 1)[0]
        url = f"{root}{folder.removeprefix(path)}"
        if url == keep:
            continue
        pin = f"{folder}/{STAGED_PIN}"
        if fs.modified(pin if fs.exists(pin) else manifest) < cutoff:
            shared.remove_folder(url)
            removed.append(url)
    if removed:
        log.info("removed %d staged model cop(ies) not pinned for %d days", len(removed), STAGED_KEEP_DAYS)
    return removed


def load_staged(url: str, pinned: tuple[str, str]) -> ModelBundle:
    """The bundle ``stage_bundle`` copied to ``url``, after checking it is ``pinned``'s and whole."""
    import hashlib
    import posixpath
    import tempfile

    from pipeline import shared

    (text,) = shared.read_existing([f"{url}/{STAGED_MANIFEST}"])
    if text is None:
        raise MissingInputError(
            f"staged model {url} has no {STAGED_MANIFEST} (stage it again: rerun pin_model)"
        )
    if posixpath.basename(url.rstrip("/")) != _staged_folder(text):
        raise MissingInputError(f"staged model {url}: {STAGED_MANIFEST} is not the one staged there")
    manifest = json.loads(text)
    if (manifest["model_name"], manifest["model_version"]) != (pinned[0], str(pinned[1])):
        raise MissingInputError(
            f"staged model {url} is {manifest['model_name']} v{manifest['model_version']}, "
            f"not the pinned {pinned[0]} v{pinned[1]}"
        )
    names = sorted(manifest["files"])
    with tempfile.TemporaryDirectory() as tmp:
        for f, data in zip(names, shared.read_existing([f"{url}/{f}" for f in names]), strict=True):
            if data is None or hashlib.sha256(data).hexdigest() != manifest["files"][f]:
                raise MissingInputError(f"staged model {url}: {f} is missing or differs from its manifest")
            (Path(tmp) / f).write_bytes(data)
        return ModelBundle.load(Path(tmp))


def _download(name: str, version: str, dst: str | None = None) -> str:
    """A registered version's artifacts, downloaded through the registry; their local folder."""
    from mlflow.exceptions import MlflowException

    import mlflow

    try:
        return str(
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=dst)
        )
    except MlflowException as exc:
        raise MissingInputError(
            f"models:/{name}/{version}: cannot load from the registry ({exc.message})"
        ) from exc


def use_tracking(tracking_uri: str) -> None:
    """Point MLflow's tracking and registry at ``tracking_uri`` (called by each stage, never at import)."""
    import mlflow

    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)


def ensure_experiment(name: str, artifact_root: Path) -> str:
    """Use experiment ``name``, creating it with artifacts under ``artifact_root`` (not ./mlruns)."""
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        artifact_root.mkdir(parents=True, exist_ok=True)
        exp_id = mlflow.create_experiment(name, artifact_location=artifact_root.resolve().as_uri())
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return str(exp_id)

"""The ``fraudseq`` command line (contract section 6).

Every command takes ``--json``: stdout then carries only the JSON object, and logs and
progress bars go to stderr. Errors a user can cause become one line and an exit code.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.config import Settings
from pipeline.errors import FraudseqError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Event-sequence fraud scoring.")
benchmark_app = typer.Typer(no_args_is_help=True, help="Benchmarks on public data.")
db_app = typer.Typer(no_args_is_help=True, help="Scores database administration.")
app.add_typer(benchmark_app, name="benchmark")
app.add_typer(db_app, name="db")

Landing = Annotated[
    Path | None, typer.Option("--landing", help="Landing folder (default: $FRAUDSEQ_LANDING).")
]
Json = Annotated[bool, typer.Option("--json", help="Print only a JSON object on stdout.")]
Day = Annotated[str, typer.Option("--date", help="The day, YYYY-MM-DD (UTC).")]


def _setup_logging() -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(console=Console(stderr=True), show_path=False, show_time=False)
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[handler], force=True)
    for noisy in ("alembic", "mlflow", "great_expectations", "urllib3", "httpx", "airflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def parse_day(value: str, option: str = "--date") -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        _fail(f"{option} {value!r}: expected a date as YYYY-MM-DD", 2)
        raise  # unreachable


def _fail(message: str, code: int) -> None:
    print(f"fraudseq: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def _settings(landing: Path | None = None) -> Settings:
    settings = Settings()
    if landing is not None:
        settings = settings.model_copy(update={"landing": landing})
    return settings


def _run(as_json: bool, work: Callable[[], dict[str, Any]], human: Callable[[dict[str, Any]], str]) -> None:
    """Run one command: FraudseqError becomes one stderr line and its exit code."""
    from pipeline.heap import tune_collector

    _setup_logging()
    tune_collector()  # a batch process: see pipeline.heap
    try:
        result = work()
    except FraudseqError as exc:
        report = getattr(exc, "report", None)
        if as_json and report is not None:
            print(json.dumps(report))
        _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, exc.exit_code)
        return
    print(json.dumps(result, default=str) if as_json else human(result))


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="Landing folder to write.")],
    customers: Annotated[int, typer.Option(min=1)] = 300,
    days: Annotated[int, typer.Option(min=1)] = 35,
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")] = "2026-01-05",
    seed: int = 0,
    file_format: Annotated[str, typer.Option("--format", help="parquet or csv")] = "parquet",
    chunk_customers: Annotated[
        int | None,
        typer.Option(help="Generate this many customers at a time (bounded memory for big zones)."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Write a synthetic landing zone with fraud scenarios and late labels."""
    from dataclasses import asdict

    from pipeline.generate import generate_landing

    first = parse_day(start, "--start")
    _run(
        as_json,
        lambda: {
            k: str(v) if isinstance(v, Path) else v
            for k, v in asdict(
                generate_landing(out, customers, days, first, seed, file_format, chunk_customers)
            ).items()
        },
        lambda r: (
            f"wrote {r['n_transactions']} transactions, {r['n_logins']} logins, {r['n_labels']} labels to {r['out']}"
        ),
    )


@app.command()
def validate(date_: Day, landing: Landing = None, as_json: Json = False) -> None:
    """Validate one day of every log (contract section 2)."""
    from pipeline.validate import validate_day

    day = parse_day(date_)
    _run(
        as_json,
        lambda: validate_day(_settings(landing), day),
        lambda r: (
            f"{r['date']}: {r['status']} "
            + ", ".join(f"{k} {v['rows_kept']}/{v['rows_in']} kept" for k, v in r["logs"].items())
        ),
    )


@app.command()
def train(
    train_start: Annotated[str, typer.Option("--train-start")],
    train_end: Annotated[str, typer.Option("--train-end")],
    landing: Landing = None,
    model: Annotated[str | None, typer.Option("--model", help="Registered model name.")] = None,
    seed: int = 0,
    epochs: Annotated[int, typer.Option(min=1)] = 8,
    nproc: Annotated[
        int,
        typer.Option("--nproc", min=1, help="Processes for DDP training under torchrun (see docs/ddp.md)."),
    ] = 1,
    as_json: Json = False,
) -> None:
    """Build windows, train, log to MLflow, register a version and apply the gate."""
    from pipeline.ddp import train_distributed
    from pipeline.train import TrainOptions, train_model

    s, e = parse_day(train_start, "--train-start"), parse_day(train_end, "--train-end")
    fit = train_model if nproc == 1 else partial(train_distributed, nproc=nproc)
    _run(
        as_json,
        lambda: fit(_settings(landing), s, e, model, seed, TrainOptions(epochs=epochs), progress=not as_json),
        lambda r: (
            f"{r['model_name']} version {r['version']}: {'promoted' if r['promoted'] else 'not promoted'} ({r['reason']})"
        ),
    )


@app.command()
def score(
    date_: Day,
    landing: Landing = None,
    model_uri: Annotated[
        str | None, typer.Option("--model-uri", help="models:/NAME@ALIAS or models:/NAME/VERSION")
    ] = None,
    as_json: Json = False,
) -> None:
    """Score one day with the champion and write the tables."""
    from pipeline.score import score_day

    day = parse_day(date_)
    _run(
        as_json,
        lambda: score_day(_settings(landing), day, model_uri),
        lambda r: (
            f"{r['date']}: {r['n_transactions']} scored, {r['n_alerts']} alerts ({r['model_name']} v{r['model_version']})"
        ),
    )


@app.command()
def evaluate(
    start: Annotated[str, typer.Option("--start")],
    end: Annotated[str, typer.Option("--end")],
    landing: Landing = None,
    as_json: Json = False,
) -> None:
    """Metrics of the stored scores against the labels known now."""
    from pipeline.evaluate import evaluate_range

    s, e = parse_day(start, "--start"), parse_day(end, "--end")
    _run(as_json, lambda: evaluate_range(_settings(landing), s, e), lambda r: json.dumps(r, indent=2))


@app.command()
def backfill(
    start: Annotated[str, typer.Option("--start")],
    end: Annotated[str, typer.Option("--end")],
    landing: Landing = None,
    model_uri: Annotated[str | None, typer.Option("--model-uri")] = None,
    as_json: Json = False,
) -> None:
    """Validate and score each day in order; re-running it is safe."""
    from pipeline.backfill import backfill_range

    s, e = parse_day(start, "--start"), parse_day(end, "--end")
    _run(
        as_json,
        lambda: backfill_range(_settings(landing), s, e, model_uri),
        lambda r: "\n".join(f"{d['date']}: {d['validation']} / {d['scored']} scored" for d in r["days"]),
    )


@app.command()
def status(as_json: Json = False) -> None:
    """Champion version, last validated and scored days, latest alert count, drift."""
    from pipeline.status import format_status, pipeline_status

    _run(as_json, lambda: pipeline_status(_settings()), format_status)


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=50)] = 300,
    days: Annotated[int, typer.Option(min=21)] = 35,
    seed: int = 0,
    as_json: Json = False,
) -> None:
    """The whole job end to end on embedded defaults: generate, validate, train, score, report."""
    from pipeline.demo import run_demo

    _run(as_json, lambda: run_demo(_settings(), customers, days, seed), lambda r: r["summary"])


@benchmark_app.command("handbook")
def benchmark_handbook(
    data: Annotated[Path, typer.Option("--data")] = Path("../shared/data/handbook/transactions.parquet"),
    models: Annotated[
        str, typer.Option("--models", help="Comma list, or 'all'.")
    ] = "logreg,gbt,bilstm,bilstm_last",
    seeds: Annotated[str, typer.Option("--seeds")] = "0,1,2",
    tune: Annotated[
        bool, typer.Option("--tune", help="Search hyper-parameters on the validation folds.")
    ] = False,
    folds: Annotated[
        str, typer.Option("--folds", help="test (the published table) or validation (a trial run).")
    ] = "test",
    settings: Annotated[
        list[str] | None,
        typer.Option("--set", help="KEY=VALUE over the stored config, e.g. model.hidden=64 (repeatable)."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Run the Fraud Detection Handbook protocol on its public data (never touches the champion)."""
    from pipeline.benchmark import run_handbook_benchmark

    if not data.exists():
        _fail(f"--data {data}: no such file", 1)
    names = ["all"] if models == "all" else [m.strip() for m in models.split(",") if m.strip()]
    seed_list = [int(s) for s in seeds.split(",")]
    overrides = {}
    for item in settings or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            _fail(f"--set {item}: expected KEY=VALUE", 2)
        try:
            overrides[key] = json.loads(raw)
        except ValueError:
            overrides[key] = raw  # a bare word, e.g. fit.loss=focal
    _run(
        as_json,
        lambda: run_handbook_benchmark(
            data,
            names,
            seed_list,
            tune=tune,
            tracking_uri=Settings().tracking_uri,
            progress=True,
            folds=folds,
            overrides=overrides,
        ),
        lambda r: json.dumps(r["models"], indent=2),
    )


@benchmark_app.command("synthetic")
def benchmark_synthetic(
    customers: Annotated[int, typer.Option(min=100)] = 1500,
    days: Annotated[int, typer.Option(min=35)] = 56,
    test_days: Annotated[int, typer.Option(min=1)] = 14,
    seed: int = 0,
    epochs: Annotated[int, typer.Option(min=1)] = 6,
    work: Annotated[
        Path | None, typer.Option("--work", help="Scratch folder (default: $FRAUDSEQ_HOME/bench-synthetic).")
    ] = None,
    as_json: Json = False,
) -> None:
    """Our multi-log data: BiLSTM with and without logins against LightGBM with login aggregates."""
    from pipeline.compare import run_synthetic_benchmark
    from pipeline.train import TrainOptions

    folder = work or Settings().home_dir / "bench-synthetic"
    opts = TrainOptions(epochs=epochs, neg_per_pos=20.0)
    _run(
        as_json,
        lambda: run_synthetic_benchmark(folder, customers, days, test_days, seed, opts, progress=not as_json),
        lambda r: json.dumps(r["models"], indent=2),
    )


@db_app.command("init")
def db_init(
    writer_role: Annotated[
        str | None, typer.Option("--writer-role", help="PostgreSQL role for daily writes.")
    ] = None,
    as_json: Json = False,
) -> None:
    """Create the tables and view (as admin); optionally a least-privilege writer role."""
    from pipeline import db

    def work() -> dict[str, Any]:
        url = _settings().scores_db_url
        if writer_role:
            db.init_roles(url, writer_role, None)
        else:
            engine = db.make_engine(url)
            try:
                db.init_schema(engine)
            finally:
                engine.dispose()
        return {"url": db.redact_url(url), "writer_role": writer_role}

    _run(as_json, work, lambda r: f"scores schema ready at {r['url']}")


def main() -> None:  # pragma: no cover - console entry
    app()

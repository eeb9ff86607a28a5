"""CLI commands for infersweep.evals (registered by infersweep.cli).

    infersweep eval gsm8k --base-url URL --model NAME [--limit N] [--concurrency C] [--data-dir D]
                          --out FILE [--backend native|lm-eval]
    infersweep eval score gsm8k --responses FILE.jsonl [--data-dir D] [--per-sample FILE]

`eval gsm8k` prints the summary JSON and exits 0 when the accuracy gate passes, 3 when a filter's
score is below the model's threshold (`accuracy_below_threshold`) and 1 on any other failure.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

EXIT_BELOW_THRESHOLD = 3

eval_app = typer.Typer(help="Accuracy evals (GSM8K, scored exactly like lm-eval).", no_args_is_help=True)
score_app = typer.Typer(help="Score saved responses offline.", no_args_is_help=True)
eval_app.add_typer(score_app, name="score")


class Backend(StrEnum):
    """Who sends the requests: our async client, or lm-eval itself."""

    native = "native"
    lm_eval = "lm-eval"


def register(app: typer.Typer) -> None:
    """Attach this package's commands to the top-level app."""
    app.add_typer(eval_app, name="eval")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@eval_app.command("gsm8k")
def gsm8k_command(
    base_url: Annotated[str, typer.Option(help="Server root, /v1 base or full /v1/chat/completions URL.")],
    model: Annotated[str, typer.Option(help="Served model name sent in each request.")],
    out: Annotated[Path, typer.Option(help="Samples jsonl to write; the summary goes to <stem>.summary.json.")],
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N test docs (smoke runs).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight (the eval conc).")] = 64,
    data_dir: Annotated[Path | None, typer.Option(help="Folder with train.jsonl/test.jsonl instead of the hub.")] = None,
    backend: Annotated[Backend, typer.Option(help="native (async client) or lm-eval (the reference tool).")] = Backend.native,
    context_len: Annotated[int, typer.Option(min=1, help="Server context; max_tokens = min(16384, ctx-4096) or ctx/2.")] = 16384,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="Override the max_tokens derived from --context-len.")] = None,
    model_prefix: Annotated[str | None, typer.Option(help="InferenceX model prefix for the threshold (e.g. dsr1).")] = None,
    thresholds: Annotated[Path | None, typer.Option(help="Thresholds JSON (default: bundled InferenceX floors).")] = None,
    single_turn: Annotated[bool, typer.Option(help="Few-shot in one user message (lm-eval --fewshot_as_multiturn false).")] = False,
    lm_eval_python: Annotated[str | None, typer.Option(help="Python with lm-eval installed (lm-eval backend).")] = None,
) -> None:
    """Run GSM8K (5-shot, chat template, greedy) against a running server and gate on accuracy."""
    import os

    from infersweep.evals.client import EvalRequestError
    from infersweep.evals.data import Gsm8kDataError
    from infersweep.evals.models import EvalResult
    from infersweep.evals.thresholds import ThresholdConfigError

    result: EvalResult
    try:
        if backend is Backend.lm_eval:
            from infersweep.evals.lm_eval_backend import LmEvalError, run_lm_eval

            if single_turn:
                raise _fail("--single-turn is only supported by the native backend")
            try:
                result = run_lm_eval(
                    base_url, model, limit=limit, concurrency=concurrency, data_dir=data_dir,
                    context_len=context_len, max_tokens=max_tokens, out=out, model_prefix=model_prefix,
                    thresholds=thresholds, lm_eval_python=lm_eval_python,
                )  # fmt: skip
            except LmEvalError as exc:
                raise _fail(str(exc)) from exc
        else:
            from infersweep.evals.gsm8k import run_gsm8k

            result = run_gsm8k(
                base_url, model, limit=limit, concurrency=concurrency, data_dir=data_dir,
                context_len=context_len, max_tokens=max_tokens, out=out, model_prefix=model_prefix,
                thresholds=thresholds, fewshot_as_multiturn=not single_turn,
                api_key=os.environ.get("OPENAI_API_KEY"),
            )  # fmt: skip
    except (EvalRequestError, Gsm8kDataError, ThresholdConfigError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    typer.echo(json.dumps(result.summary(), indent=2))
    if not result.passed:
        typer.echo(
            f"accuracy_below_threshold: strict {result.strict_match:.4f} / flexible {result.flexible_extract:.4f} "
            f"< {result.threshold} ({result.threshold_source})",
            err=True,
        )
        raise typer.Exit(EXIT_BELOW_THRESHOLD)


@score_app.command("gsm8k")
def score_gsm8k_command(
    responses: Annotated[Path, typer.Option(help='jsonl of {"doc_id": int, "response": str}; doc_id = test index.')],
    data_dir: Annotated[Path | None, typer.Option(help="Folder with train.jsonl/test.jsonl instead of the hub.")] = None,
    per_sample: Annotated[Path | None, typer.Option(help="Write per-row extractions and correctness here (jsonl).")] = None,
) -> None:
    """Score saved responses with lm-eval's gsm8k filters and exact_match; print a JSON summary."""
    from infersweep.evals.data import Gsm8kDataError
    from infersweep.evals.gsm8k import ResponseFileError, read_responses, score_responses
    from infersweep.evals.results import write_jsonl

    try:
        summary, samples = score_responses(read_responses(responses), data_dir=data_dir, where=str(responses))
    except (ResponseFileError, Gsm8kDataError) as exc:
        raise _fail(str(exc)) from exc
    if per_sample is not None:
        per_sample.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(per_sample, [s.model_dump(exclude_none=True) for s in samples])
    typer.echo(json.dumps(summary.model_dump(), indent=2))

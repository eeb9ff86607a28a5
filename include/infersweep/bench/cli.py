"""`infersweep bench`: run one or several concurrencies against an OpenAI-compatible server."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

_PREFIX = "infersweep bench:"


def parse_concs(values: list[str]) -> list[int]:
    """``--conc 4 --conc 8`` and ``--conc 4,8,16`` (or both) → [4, 8, 16]; order kept, duplicates dropped."""
    out: list[int] = []
    for v in values:
        for part in v.replace(" ", ",").split(","):
            if not part:
                continue
            try:
                c = int(part)
            except ValueError:
                raise typer.BadParameter(f"--conc: {part!r} is not an integer") from None
            if c < 1:
                raise typer.BadParameter(f"--conc: {c} must be ≥ 1")
            if c not in out:
                out.append(c)
    if not out:
        raise typer.BadParameter("--conc: give at least one concurrency")
    return out


def result_path(result_file: Path, conc: int, multi: bool) -> Path:
    """One conc → ``result_file`` as given; several → ``<stem>_conc<C><suffix>`` next to it."""
    if not multi:
        return result_file
    return result_file.with_name(f"{result_file.stem}_conc{conc}{result_file.suffix or '.json'}")


def _fail(lines: Sequence[str], code: int = 2) -> typer.Exit:
    for line in lines:
        typer.echo(f"{_PREFIX} {line}", err=True)
    return typer.Exit(code)


def _blocking_file(folder: Path) -> Path | None:
    """The nearest existing ancestor of ``folder`` (itself included) when it is a file, not a folder."""
    try:
        for p in (folder, *folder.parents):
            if p.exists():
                return None if p.is_dir() else p
    except OSError:  # e.g. a parent we may not search: the write probe reports it with its errno
        pass
    return None


def check_result_paths(paths: Sequence[Path]) -> list[str]:
    """Problems that would stop the result files from being written, found before any request is sent.

    Each folder is created (as the write at the end would) and probed with a real temporary file: permission
    bits say nothing about root, ACLs or a read-only mount."""
    fix = "Fix: point --result-file at a folder you can create and write to. Nothing was sent."
    problems: list[str] = []
    for path in paths:
        is_dir = False
        with contextlib.suppress(OSError):  # not searchable: the write probe below reports it
            is_dir = path.is_dir()
        if is_dir:
            problems.append(f"cannot write the result file {path}: it is a folder. Fix: give a file path such "
                            f"as {path / 'result.json'}. Nothing was sent.")
    for folder in dict.fromkeys(p.parent for p in paths):
        first = next(p for p in paths if p.parent == folder)
        if (blocker := _blocking_file(folder)) is not None:
            problems.append(f"cannot write the result file {first}: {blocker} is a file, not a folder. {fix}")
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".infersweep-write-check-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            problems.append(f"cannot write the result file {first}: {why} ({exc.filename or folder}). {fix}")
    return problems


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)  # never a half-written result file
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def save_result(data: bytes, path: Path) -> tuple[Path | None, str | None]:
    """Write a result to ``path``; when that fails (the folder vanished or turned read-only during the run),
    to a new file in the temporary folder instead. Returns where it went (None: nowhere, the caller prints
    it) and the problem met, if any; never raises, so a finished benchmark is never lost to a traceback."""
    try:
        _write_atomic(path, data)
        return path, None
    except OSError as exc:
        problem = f"could not write the result file {path}: {exc.strerror or exc}"
    try:
        fd, fallback = tempfile.mkstemp(prefix=f"{path.stem}-", suffix=path.suffix or ".json")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return Path(fallback), problem
    except OSError:
        return None, problem


def _parse_workers(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise _fail([f"--workers {value!r}: give a whole number ≥ 1 or auto"]) from None


def _parse_metadata(items: list[str]) -> dict[str, str]:
    meta: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--metadata: {item!r} must look like key=value")
        meta[key] = value
    return meta


TELEMETRY_SOURCES = ("none", "sim", "nvidia-smi")


def _telemetry_sampler(kind: str, base_url: str, interval_s: float) -> Any:
    """A started sampler for `--gpu-telemetry`, or None for `none`."""
    from infersweep.telemetry.gpu import NvidiaSmiSource, SimMetricsSource, TelemetrySampler

    if kind == "none":
        return None
    source = SimMetricsSource(base_url) if kind == "sim" else NvidiaSmiSource.local()
    return TelemetrySampler(source, interval_s=interval_s).start()


def _attach_telemetry(sampler: Any, result: dict, path: Path, gpus: int) -> Path:
    """Energy (InferenceX's integration) into the result; the window's readings to `<stem>_gpu_metrics.csv`."""
    import dataclasses

    from infersweep.telemetry.gpu_metrics import gpu_metrics_path, measure_point, write_gpu_metrics_csv

    point = measure_point(sampler, result, expected_gpus=gpus)
    result["infersweep"]["energy"] = dataclasses.asdict(point.energy)
    return write_gpu_metrics_csv(gpu_metrics_path(path), point.csv_text)


def _summary(res: dict) -> str:
    x = res["infersweep"]
    lines = [
        f"conc={res['max_concurrency']} completed={res['completed']} failed={res['failed']} "
        f"duration={res['duration']:.2f}s passed={x['passed']} client_bound={x['client_bound']}",
        f"  req/s={res['request_throughput']:.2f} out tok/s={res['output_throughput']:.1f} "
        f"total tok/s={res['total_token_throughput']:.1f} tok/s/gpu={x['tput_per_gpu']:.1f}",
    ]
    for m in ("ttft", "tpot", "itl", "e2el"):
        lines.append(
            f"  {m:5s} ms: mean={res[f'mean_{m}_ms']:.3f} median={res[f'median_{m}_ms']:.3f} "
            f"p99={res[f'p99_{m}_ms']:.3f} p99.9={res[f'p99.9_{m}_ms']:.3f}"
        )
    h = x["client_health"]
    lines.append(
        f"  client: lag p99={h['loop_lag_ms']['p99']:.3f} ms cpu max={h['cpu_pct_max']:.0f}% "
        f"µs/event={h['cpu_us_per_event'] or 0:.2f} workers={x['workers']}"
    )
    e = x.get("energy")
    if e is not None:
        lines.append(
            f"  energy: {e['joules_per_token']:.4f} J/output token, {e['avg_power_w']:.1f} W over {e['gpus']} GPU(s)"
            + (" (simulated)" if e["simulated"] else "")
            if e["joules_per_token"] is not None
            else f"  energy: n/a ({e['reason']})"
        )
    causes = x.get("error_causes") or []
    if res["failed"] and causes:
        from infersweep.bench.result import format_causes

        lines.append(f"  errors: {format_causes(causes)}")
    lines.extend(f"  FAIL: {r}" for r in x["fail_reasons"])
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Attach this package's commands to the top-level app."""

    @app.command("bench")
    def bench(
        base_url: str = typer.Option(..., "--base-url", help="Server root, e.g. http://127.0.0.1:8000"),
        model: str = typer.Option(..., "--model", help="Served model name"),
        tokenizer: str = typer.Option(
            ..., "--tokenizer", help="Tokenizer directory (tokenizer.json) or hub id"
        ),
        isl: int = typer.Option(..., "--isl", min=1, help="Input length in tokens"),
        osl: int = typer.Option(..., "--osl", min=1, help="Output length in tokens"),
        conc: list[str] = typer.Option(..., "--conc", help="Max concurrency; repeat or give a list (4,8,16)"),
        result_file: Path = typer.Option(
            ..., "--result-file", help="Result JSON; with several --conc, one <stem>_conc<C>.json per conc"
        ),
        num_prompts: int | None = typer.Option(None, "--num-prompts", min=1, help="Measured requests (10·C)"),
        num_warmups: int | None = typer.Option(None, "--num-warmups", min=0, help="Warm-ups (2·C, distinct)"),
        random_range_ratio: float = typer.Option(
            1.0,
            "--random-range-ratio",
            help="InferenceX semantics: lengths in [r·L, L]; 1 = exact (vLLM's differs)",
        ),
        chat: bool = typer.Option(False, "--chat", help="Use /v1/chat/completions with the chat template"),
        prompt_template: str = typer.Option(
            "none", "--prompt-template",
            help="Template on the client and send the prompt's ids to /v1/completions (InferenceX's "
            "--use-chat-template): none | tokenizer (its chat template) | dsv4 (DeepSeek-V4's framing, --dsv4)",
        ),
        request_rate: float = typer.Option(
            float("inf"), "--request-rate", help="Requests/s (inf = closed loop)"
        ),
        burstiness: float = typer.Option(1.0, "--burstiness", help="Gamma shape for rate mode; 1 = Poisson"),
        gpus: int = typer.Option(1, "--gpus", min=1, help="GPUs behind the server (per-GPU throughput)"),
        prefill_gpus: int | None = typer.Option(
            None, "--prefill-gpus", min=1, help="disaggregated: prefill pool GPUs (input throughput per GPU)"),
        decode_gpus: int | None = typer.Option(
            None, "--decode-gpus", min=0, help="disaggregated: decode pool GPUs (output throughput per GPU)"),
        seed: int = typer.Option(0, "--seed"),
        slo_ttft_ms: float | None = typer.Option(None, "--slo-ttft-ms", help="Goodput SLO on TTFT"),
        slo_tpot_ms: float | None = typer.Option(None, "--slo-tpot-ms", help="Goodput SLO on TPOT"),
        slo_e2el_ms: float | None = typer.Option(None, "--slo-e2el-ms", help="Goodput SLO on E2EL"),
        workers: str = typer.Option(
            "auto", "--workers", help="Client processes (auto: >1 above 512 streams)"
        ),
        max_failed_fraction: float = typer.Option(0.05, "--max-failed-fraction"),
        allow_length_mismatch: bool = typer.Option(
            False, "--allow-length-mismatch", help="Report ISL/OSL violations without failing the point"
        ),
        no_ignore_eos: bool = typer.Option(False, "--no-ignore-eos", help="Do not send ignore_eos"),
        request_timeout_s: float = typer.Option(6 * 3600.0, "--request-timeout-s", help="Per-request total"),
        stall_timeout_s: float = typer.Option(
            900.0, "--stall-timeout-s",
            help="Max silence within a stream; when no request gets a response for this long the point is aborted",
        ),
        progress_interval_s: float = typer.Option(
            10.0, "--progress-interval-s", min=0.0,
            help="Seconds between progress lines on stderr (completed/failed/in flight, elapsed); 0: none",
        ),
        save_detailed: bool = typer.Option(False, "--save-detailed", help="Also write per-request itls"),
        save_texts: bool = typer.Option(False, "--save-texts", help="Also write generated_texts"),
        metadata: list[str] = typer.Option([], "--metadata", help="key=value copied into the result"),
        gpu_telemetry: str = typer.Option(
            "none", "--gpu-telemetry",
            help="Sample GPU power during the run: none | sim (the simulator's /metrics) | nvidia-smi (this "
            "host). Adds infersweep.energy and writes <stem>_gpu_metrics.csv beside each result (InferenceX "
            "aggregate_power.py format)",
        ),
        telemetry_interval_s: float = typer.Option(
            1.0, "--telemetry-interval-s", min=0.05,
            help="Seconds between GPU telemetry reads (InferenceX: 1; over 3 s cannot be valid)",
        ),
    ) -> None:
        """Benchmark an OpenAI-compatible server with exact lengths and vLLM-compatible metrics.

        Exit code 0 when every point passed, 1 when a point failed (its file is still written) or a result
        could not be written where asked (it is saved in the temporary folder instead), 2 on bad input
        (checked before any request is sent)."""
        import orjson
        from pydantic import ValidationError

        from infersweep.bench.api import run_benchmark
        from infersweep.bench.config import BenchConfig
        from infersweep.bench.tokenizer import TokenizerError

        concs = parse_concs(conc)
        meta = _parse_metadata(metadata)
        if gpu_telemetry not in TELEMETRY_SOURCES:
            raise typer.BadParameter(f"--gpu-telemetry: {gpu_telemetry!r} is not one of {', '.join(TELEMETRY_SOURCES)}")
        from infersweep.telemetry.gpu import MAX_SAMPLE_GAP_S

        if telemetry_interval_s >= MAX_SAMPLE_GAP_S:
            raise typer.BadParameter(f"--telemetry-interval-s: {telemetry_interval_s:g} s leaves gaps of at least "
                                     f"that, and InferenceX rejects gaps over {MAX_SAMPLE_GAP_S:g} s; use 1")
        n_workers = _parse_workers(workers)
        # Every point's settings and every result path are checked before the first request: a bad value
        # or an unwritable folder must not surface after a long benchmark.
        cfgs = []
        for c in concs:
            try:
                cfgs.append(BenchConfig(
                    base_url=base_url, model=model, tokenizer=tokenizer, isl=isl, osl=osl, conc=c,
                    num_prompts=num_prompts, warmups=num_warmups, random_range_ratio=random_range_ratio,
                    chat=chat, prompt_template=prompt_template, request_rate=request_rate, burstiness=burstiness, gpus=gpus,
                    prefill_gpus=prefill_gpus, decode_gpus=decode_gpus, seed=seed,
                    slo_ttft_ms=slo_ttft_ms, slo_tpot_ms=slo_tpot_ms, slo_e2el_ms=slo_e2el_ms, workers=n_workers,
                    max_failed_fraction=max_failed_fraction, fail_on_length_violation=not allow_length_mismatch,
                    ignore_eos=not no_ignore_eos, request_timeout_s=request_timeout_s,
                    stall_timeout_s=stall_timeout_s, progress_interval_s=progress_interval_s or None,
                    save_detailed=save_detailed, save_texts=save_texts, metadata=meta,
                ))  # fmt: skip
            except ValidationError as exc:
                raise _fail([f"invalid input: {line}" for line in BenchConfig.explain(exc)]) from None
        paths = [result_path(result_file, c, len(concs) > 1) for c in concs]
        if problems := check_result_paths(paths):
            raise _fail(problems)
        any_failed = False
        # one sampler over every point, started before the first warm-up, so each window has readings around it
        sampler = _telemetry_sampler(gpu_telemetry, base_url, telemetry_interval_s)
        try:
            for cfg, path in zip(cfgs, paths, strict=True):
                try:
                    result = run_benchmark(cfg)
                except (TokenizerError, ValueError) as exc:
                    raise _fail([f"invalid input: {exc}"]) from None
                csv_path = None
                if sampler is not None:
                    try:
                        csv_path = _attach_telemetry(sampler, result, path, gpus)
                    except OSError as exc:
                        typer.echo(f"{_PREFIX} could not write the GPU metrics CSV next to {path}: "
                                   f"{exc.strerror or exc}", err=True)
                data = orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
                where, problem = save_result(data, path)
                typer.echo(_summary(result))
                if problem is None:
                    typer.echo(f"  wrote {path}" + (f" and {csv_path}" if csv_path else ""))
                elif where is not None:
                    typer.echo(f"{_PREFIX} {problem}; the result was saved to {where} instead", err=True)
                else:
                    typer.echo(f"{_PREFIX} {problem}, nor to the temporary folder; the result follows on stdout",
                               err=True)
                    typer.echo(data.decode())
                any_failed |= not result["infersweep"]["passed"] or problem is not None
        finally:
            if sampler is not None:
                sampler.stop()
        if any_failed:
            raise typer.Exit(1)

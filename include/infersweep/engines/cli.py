"""CLI commands for infersweep.engines: the `sim` group (registered by infersweep.cli)."""

from __future__ import annotations

import typer

sim_app = typer.Typer(name="sim", help="The simulated engine (OpenAI-compatible, roofline-timed).",
                      no_args_is_help=True)


@sim_app.command(
    "serve",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def serve(ctx: typer.Context) -> None:
    """Serve the simulator: `infersweep sim serve [MODEL] --host H --port P [--model-profile NAME]
    [--gpu-profile NAME] [--tp N] [--time-scale X] …` (`--help` lists every flag, vLLM's included)."""
    from infersweep.engines.sim.config import parse_sim_argv
    from infersweep.engines.sim.server import serve as run

    raise typer.Exit(run(parse_sim_argv(ctx.args)))


@sim_app.command(
    "router",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def router(ctx: typer.Context) -> None:
    """Route a disaggregated simulated server: `infersweep sim router --port P --prefill URL [--prefill URL …]
    --decode URL [--decode URL …] [--policy round_robin|least_loaded]` (workers run `sim serve --role …`)."""
    from infersweep.engines.sim.router import parse_router_argv, serve_router

    raise typer.Exit(serve_router(parse_router_argv(ctx.args)))


@sim_app.command("idle")
def idle(
    port: int = typer.Option(..., help="port to answer /health on"),
    name: str = typer.Option("component", help="the topology component this stands in for"),
    host: str = typer.Option("127.0.0.1"),
) -> None:
    """Stand in for a topology component the simulator needs nothing from (a worker's non-head rank, etcd,
    NATS): a process that only answers /health."""
    from infersweep.engines.sim.router import serve_idle

    raise typer.Exit(serve_idle(name, host, port))


@sim_app.command("profiles")
def profiles() -> None:
    """List the model and GPU profiles the simulator ships."""
    from infersweep.engines.sim.profiles import model_profiles
    from infersweep.recipes.hardware import GPU_SPECS

    for p in model_profiles().values():
        kind = f"MoE {p.num_experts}x top-{p.experts_per_token}" if p.is_moe else "dense"
        typer.echo(f"model {p.name:<14} {p.hf_id:<40} {p.total_params / 1e9:7.1f} B total "
                   f"{p.active_params / 1e9:6.1f} B active  {kind}  {p.precision}")
    for g in GPU_SPECS.values():
        typer.echo(f"gpu   {g.name:<8} {g.memory_gb:6.0f} GB  {g.hbm_tb_s:4.2f} TB/s  "
                   f"{g.bf16_tflops:6.0f} TFLOPS bf16  {g.fp8_tflops:6.0f} TFLOPS fp8  {g.tdp_w:5.0f} W")


def register(app: typer.Typer) -> None:
    """Attach this package's commands to the top-level app: `sim …` and `engines …` (download, verify, reap)."""
    from infersweep.engines import ops_cli

    app.add_typer(sim_app, name="sim")
    ops_cli.register(app)

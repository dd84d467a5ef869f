"""``openkontext train``: the Typer app of the training commands (vae, transformer, distill, export, bench).

    python -m openkontext.training.cli vae --run runs/default --preset default --max-seconds 3600
    python -m openkontext.training.cli transformer --run runs/default
    python -m openkontext.training.cli export --run runs/default --out path/to/model
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..engine.model_info import GUIDANCE_MODES, MAX_GLYPH_GUIDANCE
from .config import PRESETS, preset

app = typer.Typer(help="Train the OpenKontext model on the toy world (autoencoder, then transformer).",
                  no_args_is_help=True)  # fmt: skip


def _config(run: Path, name: str, steps: int | None, batch: int | None, stage: str, threads: int | None):
    from .checkpoint import read_config

    if name not in PRESETS:
        raise typer.BadParameter(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    cfg = read_config(run) if (run / "config.json").exists() else preset(name)
    if steps is not None:
        setattr(getattr(cfg, stage), "steps", steps)
    if batch is not None:
        setattr(getattr(cfg, stage), "batch", batch)
    if threads is not None:
        cfg.threads = threads
    return cfg


def _mixture(value: str, option: str = "--categories") -> tuple[str, ...]:
    """--categories or --focus: names of categories or edit families, each checked."""
    from openkontext.toyworld.sample import check_kinds

    try:
        return check_kinds(name.strip() for name in value.split(",") if name.strip())
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint=option) from None


def _switch(run: Path, cfg, switches: dict) -> None:
    """Set recipe fields ('categories', 'flow.optimizer') on ``cfg`` and, for an existing run, in its saved recipe,
    so that later resumes keep them."""
    from .checkpoint import read_config, write_config

    targets = [cfg] + ([read_config(run)] if switches and (run / "config.json").exists() else [])
    for target in targets:
        for key, value in switches.items():
            part, _, attr = key.rpartition(".")
            setattr(getattr(target, part) if part else target, attr, value)
    if len(targets) == 2:
        write_config(run, targets[1])


RUN = typer.Option(..., "--run", help="run folder (full training state; keep it out of git)")
PRESET = typer.Option("default", "--preset", help=f"recipe for a new run: {', '.join(PRESETS)}")
MAX_SECONDS = typer.Option(None, "--max-seconds", help="stop (with a checkpoint) after this long")
MAX_STEPS = typer.Option(None, "--max-steps", help="stop after this many steps in this call")
STEPS = typer.Option(None, "--steps", help="total steps of the stage (overrides the recipe)")
BATCH = typer.Option(None, "--batch", help="batch size (overrides the recipe)")
DEVICE = typer.Option("auto", "--device", help="auto: CUDA when available, else CPU (bf16 where native)")
THREADS = typer.Option(None, "--threads", help="torch CPU threads")
NO_STEP = "no step ran: the {} is complete, or --max-seconds ended it before the first step"


@app.command()
def vae(run: Path = RUN, preset_name: str = PRESET, max_seconds: float = MAX_SECONDS, max_steps: int = MAX_STEPS,
        steps: int = STEPS, batch: int = BATCH, device: str = DEVICE, threads: int = THREADS) -> None:  # fmt: skip
    """Train (or resume) the autoencoder; prints its held-out PSNR and OCR round trip at the end."""
    from .loop import stop_on_signals, train_vae

    cfg = _config(run, preset_name, steps, batch, "vae", threads)
    with stop_on_signals():
        records = train_vae(cfg, run, max_seconds=max_seconds, max_steps=max_steps, device=device)
    typer.echo(json.dumps(records[-1]))


@app.command()
def transformer(run: Path = RUN, preset_name: str = PRESET, max_seconds: float = MAX_SECONDS,
                max_steps: int = MAX_STEPS, steps: int = STEPS, batch: int = BATCH, device: str = DEVICE,
                threads: int = THREADS,
                optimizer: str = typer.Option(None, "--optimizer", help="adamw or muon (overrides the recipe; "
                                              "switching a run starts the new optimiser's moments afresh)"),
                categories: str = typer.Option(None, "--categories", help="what the examples are drawn from, "
                                               "uniformly: comma-separated categories or edit families, a name "
                                               "repeated to draw it more often (overrides the recipe)"),
                focus: str = typer.Option(None, "--focus", help="a rotating focus: comma-separated categories or "
                                          "edit families, each in turn half of the examples of a stretch ('' to "
                                          "end it)"),
                focus_steps: int = typer.Option(None, "--focus-steps", min=1, help="steps per focus stretch"),
                ) -> None:  # fmt: skip
    """Train (or resume) the transformer and text encoders (rectified flow) on the run's autoencoder.

    --optimizer, --categories and --focus last: a later resume without them keeps them (to branch a run, copy its
    folder)."""
    from .loop import stop_on_signals, train_flow
    from .optimizer import OPTIMIZERS

    cfg = _config(run, preset_name, steps, batch, "flow", threads)
    switches = {}
    if optimizer is not None:
        if optimizer not in OPTIMIZERS:
            raise typer.BadParameter(f"choose from {', '.join(OPTIMIZERS)}", param_hint="--optimizer")
        switches["flow.optimizer"] = optimizer
    if categories is not None:
        switches["categories"] = _mixture(categories)
    if focus is not None:
        switches["focus"] = _mixture(focus, "--focus") if focus.strip() else ()
    if focus_steps is not None:
        switches["focus_steps"] = focus_steps
    _switch(run, cfg, switches)
    with stop_on_signals():
        records = train_flow(cfg, run, max_seconds=max_seconds, max_steps=max_steps, device=device)
    typer.echo(json.dumps(records[-1]) if records else NO_STEP.format("stage"))


@app.command()
def distill(run: Path = RUN, preset_name: str = PRESET, max_seconds: float = MAX_SECONDS,
            max_steps: int = MAX_STEPS, steps: int = STEPS, batch: int = BATCH, device: str = DEVICE,
            threads: int = THREADS) -> None:  # fmt: skip
    """Guidance distillation (phase 2): embedded guidance g learns to act like classifier-free guidance at g."""
    from .loop import stop_on_signals, train_flow

    cfg = _config(run, preset_name, steps, batch, "flow", threads)
    with stop_on_signals():
        records = train_flow(cfg, run, max_seconds=max_seconds, max_steps=max_steps, device=device, phase="distill")
    typer.echo(json.dumps(records[-1]) if records else NO_STEP.format("stage"))


@app.command()
def cooldown(run: Path = RUN, out: Path = typer.Option(..., "--out", help="the cooled-down copy of the run"),
             steps: int = typer.Option(..., "--steps", help="steps of linear decay after the run's current step"),
             final_lr_ratio: float = typer.Option(0.0, "--final-lr-ratio"),
             max_seconds: float = MAX_SECONDS, device: str = DEVICE) -> None:  # fmt: skip
    """Warmup-stable-decay: copy the run and decay its learning rate to the end in ``--steps`` steps; the original
    run goes on at its stable rate, so a cooled-down model can be exported at any point without ending it."""
    from .checkpoint import branch_for_cooldown
    from .loop import stop_on_signals, train_flow

    cfg = branch_for_cooldown(run, out, steps, final_lr_ratio)
    with stop_on_signals():
        records = train_flow(cfg, out, max_seconds=max_seconds, device=device)
    typer.echo(json.dumps(records[-1]) if records else NO_STEP.format("cooldown"))


@app.command()
def curve(run: Path = RUN, stretch: int = typer.Option(1000, "--stretch", help="steps per loss row"),
          sigma: str = typer.Option("0.9", "--sigma", help="the probe's noise level: 0.9, 0.5 or 0.05")) -> None:
    """Print the run's learning curve: the probe per category against steps and hours, and the loss per stretch."""
    from .checkpoint import read_config
    from .curve import loss_table, probe_table, prompt_table
    from .probe import PROBE_SIGMAS

    if sigma not in {str(s) for s in PROBE_SIGMAS}:
        raise typer.BadParameter(f"the probe measures sigma {', '.join(map(str, PROBE_SIGMAS))}", param_hint="--sigma")
    cfg = read_config(run)
    typer.echo(f"Probe (changed-token velocity error / copy baseline's, sigma {sigma}; below 1 beats copying):\n")
    typer.echo(probe_table(run, cfg.flow.batch, sigma))
    typer.echo("\nPrompt use (changed-token error with the prompt / with the empty prompt; below 1 it helps):\n")
    typer.echo(prompt_table(run, cfg.flow.batch))
    typer.echo("\nFlow loss per stretch:\n")
    typer.echo(loss_table(run, stretch))


@app.command()
def compare(run: Path = RUN, branch: Path = typer.Option(..., "--branch", exists=True, file_okay=False,
                                                         help="a run branched from --run (a copy of its folder)"),
            stretch: int = typer.Option(1000, "--stretch", help="steps per row")) -> None:
    """Paired training loss of a branch against its source at the same steps (same batches and noise): whether a
    recipe change helps, long before separate curves can tell."""
    from .curve import paired_loss_table

    for folder, hint in ((run, "--run"), (branch, "--branch")):
        if not (folder / "log.jsonl").exists():
            raise typer.BadParameter(f"no training log in {folder}", param_hint=hint)
    table = paired_loss_table(run, branch, stretch)
    if table.count("\n") < 2:
        raise typer.BadParameter(f"no step logged by both runs past {branch}'s branch point", param_hint="--branch")
    typer.echo(table)


@app.command(name="import")
def import_(run: Path = RUN, source: Path = typer.Option(..., "--from", exists=True, file_okay=False,
                                                        help="the output folder of scripts/train_gpu.py")) -> None:
    """Make a run folder from the weights a GPU stretch handed back (no optimiser state)."""
    from .transfer import import_run

    step = import_run(source, run)
    typer.echo(f"{run}: step {step}")


@app.command()
def export(run: Path = RUN, out: Path = typer.Option(..., "--out", help="model folder to write"),
           name: str = typer.Option("openkontext-toy", "--name"), ema: bool = typer.Option(True, "--ema/--no-ema"),
           bench_table: Path = typer.Option(None, "--bench-table", exists=True, dir_okay=False,
                                            help="markdown table from 'train bench' for the model card"),
           notes: Path = typer.Option(None, "--notes", exists=True, dir_okay=False,
                                      help="markdown for the card: '## Known failure cases', compute, curves"),
           preserve: float = typer.Option(0.0, "--preserve", min=0.0, max=1.0,
                                          help="the model's default paste-back threshold (measure it first)"),
           guidance: str = typer.Option(None, "--guidance", show_default=False,
                                        help="embedded (distilled), cfg (two passes) or change (change_guidance.py);"
                                             " default: embedded after 'train distill', else change"),
           glyph_guidance: float = typer.Option(1.0, "--glyph-guidance", min=0.0, max=MAX_GLYPH_GUIDANCE,
                                                help="an aligned model's glyph guidance scale (measure it first)"),
           ) -> None:  # fmt: skip
    """Write the run's model as a diffusers folder (fp16 safetensors) + openkontext.json + model card."""
    from .checkpoint import export as export_folder
    from .checkpoint import folder_size

    if guidance is not None and guidance not in GUIDANCE_MODES:
        raise typer.BadParameter(", ".join(GUIDANCE_MODES), param_hint="--guidance")
    folder = export_folder(run, out, name=name, ema=ema, bench_table=bench_table.read_text() if bench_table else None,
                           notes=notes.read_text() if notes else None, preserve=preserve,
                           guidance=guidance, glyph_guidance=glyph_guidance)  # fmt: skip
    typer.echo(f"wrote {folder} ({folder_size(folder) / 1e6:.1f} MB)")


@app.command()
def bench(model: Path = typer.Option(..., "--model", help="an exported folder or a run folder"),
          n: int = typer.Option(3, "--n"), steps: int = typer.Option(50, "--steps"),
          guidance: float = typer.Option(3.0, "--guidance"), out: Path = typer.Option(None, "--out"),
          categories: str = typer.Option(None, "--categories")) -> None:  # fmt: skip
    """Benchmark an exported folder or a run's latest weights (with the copy-input and ground-truth references)."""
    from openkontext.quality import run_bench
    from openkontext.quality.report import markdown_table

    from .editors import editor_from_folder, editor_from_run

    editor = editor_from_folder(model) if (model / "model_index.json").exists() else editor_from_run(model)
    cats = categories.split(",") if categories else None
    result = run_bench(editor, n=n, categories=cats, out_dir=out, steps=steps, guidance=guidance)
    typer.echo(markdown_table(result.summaries))


if __name__ == "__main__":
    app()

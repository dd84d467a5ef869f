"""The ``openkontext`` command: serve the API, edit locally, and talk to a running server."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from .api.signing import redact_signatures
from .engine.model_info import MAX_GLYPH_GUIDANCE
from .quiet import quiet_libraries

quiet_libraries()  # before any command imports the engine: keep the CLI's output about the edit

app = typer.Typer(help="OpenKontext: in-context image editing with a BFL-compatible API.", no_args_is_help=True)
console = Console(stderr=True)

ServerOpt = Annotated[str, typer.Option("--server", "-s", envvar="OPENKONTEXT_SERVER", help="Base URL of the API.")]
KeyOpt = Annotated[Optional[str], typer.Option("--key", "-k", help="API key (default: $BFL_API_KEY or local key).")]
DEFAULT_SERVER = "http://127.0.0.1:8000"


class _RedactSignatures(logging.Filter):
    """Access logs must not hold working result URLs: their signatures are credentials until they expire."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_signatures(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


def _setup_logging(level: str = "INFO", *, loads_model: bool = True) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.ERROR)
    quiet_libraries()
    logging.getLogger("uvicorn.access").addFilter(_RedactSignatures())
    if not loads_model:  # an API-only replica: importing diffusers and transformers would cost seconds for nothing
        return
    # loading a model folder draws diffusers' and transformers' own progress bars; the CLI shows the edit's only
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="Interface to bind.")] = None,
    port: Annotated[Optional[int], typer.Option(help="TCP port.")] = None,
    model: Annotated[Optional[str], typer.Option(help="'default', 'random', or a diffusers folder.")] = None,
    transformer_file: TransformerFileOpt = None,
    quantize: QuantizeOpt = None,
    lora: Annotated[Optional[list[str]], typer.Option("--lora", help="LoRA adapter NAME=PATH[:SCALE] (repeatable); "
                                                      "requests choose them by name.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:1, mps …")] = None,
    preserve: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help=PRESERVE_HELP)] = None,
    glyph_guidance: GlyphGuidanceOpt = None,
    accel_preset: Annotated[Optional[str], typer.Option(help="none, auto or fast (docs/gpu.md).")] = None,
    accel_options: Annotated[Optional[str], typer.Option(help="Overrides: 'compile=off,fp8=weights' …")] = None,
    accel_warmup: Annotated[Optional[str], typer.Option(help="native, all, none or '1024x1024,…'.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Engine worker threads.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Database, results and secrets folder.")] = None,
    database_url: Annotated[Optional[str], typer.Option(help="SQLAlchemy URL of the job store.")] = None,
    api_key: Annotated[Optional[list[str]], typer.Option("--api-key", help="Accepted key (repeatable).")] = None,
    public_url: Annotated[Optional[str], typer.Option(help="Base URL clients use to reach this server.")] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING …")] = "INFO",
) -> None:
    """Run the API server with its workers (settings also come from OPENKONTEXT_* variables)."""
    from pydantic import ValidationError
    from rich.markup import escape

    from .api.app import create_app
    from .api.server import serve as serve_app
    from .config import Settings
    from .runtime import StartupError, check_data_dir, open_store

    overrides = dict(host=host, port=port, model=model, transformer_file=transformer_file, device=device,
                     preserve=preserve, glyph_guidance=glyph_guidance, quantize=quantize, loras=lora,
                     accel_preset=accel_preset, accel_options=accel_options, accel_warmup=accel_warmup,
                     workers=workers, data_dir=data_dir, database_url=database_url, api_keys=api_key,
                     public_url=public_url)  # fmt: skip
    try:
        settings = Settings(**{name: value for name, value in overrides.items() if value is not None})
    except ValidationError as exc:
        console.print(f"[red]cannot start:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    _setup_logging(log_level, loads_model=settings.workers > 0)
    try:  # before the model loads: a data dir or database that cannot work fails now, with its path and cause
        check_data_dir(settings)
        store = open_store(settings)  # opened and checked once, then served
    except StartupError as exc:
        console.print(f"[red]cannot start:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    if not settings.api_keys:
        console.print(f"[bold]API key:[/bold] see {settings.data_dir / 'api-key'}  (export BFL_API_KEY=$(cat …))")
    serve_app(create_app(settings, store=store), settings, log_level=log_level.lower())


@app.command()
def worker(
    model: Annotated[Optional[str], typer.Option(help="'default', 'random', or a diffusers folder.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:1, mps …")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Worker threads (jobs run at once).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Database, storage and secrets folder.")] = None,
    database_url: Annotated[Optional[str], typer.Option(help="SQLAlchemy URL of the shared job store.")] = None,
    metrics_port: Annotated[Optional[int], typer.Option(min=0, max=65535, help="Serve this worker's /metrics on "
                                                        "this port (0: any free port; unset: none).")] = None,
    metrics_host: Annotated[str, typer.Option(help="Interface of the metrics endpoint.")] = "127.0.0.1",
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING …")] = "INFO",
) -> None:
    """Run worker threads without the API: claim jobs from the shared job store, run them, store the results.

    Every other setting (storage, acceleration, LoRAs, lease …) comes from the OPENKONTEXT_* variables, as for
    serve. SIGTERM or Ctrl-C stops claiming and lets running jobs end (up to OPENKONTEXT_SHUTDOWN_TIMEOUT_S)."""
    import signal
    import threading

    from pydantic import ValidationError
    from rich.markup import escape

    from .config import Settings
    from .runtime import StartupError, WorkerProcess

    _setup_logging(log_level)
    overrides = dict(model=model, device=device, workers=workers, data_dir=data_dir, database_url=database_url)
    try:
        settings = Settings(**{name: value for name, value in overrides.items() if value is not None})
        process = WorkerProcess(settings, role="worker")
    except (ValidationError, StartupError) as exc:
        console.print(f"[red]cannot start:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    process.start(metrics_port=metrics_port, metrics_host=metrics_host)
    stopping.wait()
    logging.getLogger(__name__).info("stopping: running jobs may take %.0f s to end", settings.shutdown_timeout_s)
    process.drain(settings.shutdown_timeout_s)


PRESERVE_HELP = "Paste-back threshold 0-1 (0: off; default: the model's own, docs/api.md)."
GLYPH_GUIDANCE_HELP = ("Glyph guidance of a model that draws the word to write (1: plain; default: the model's own, "
                       "docs/api.md).")
TransformerFileOpt = Annotated[Optional[Path], typer.Option(help="Single-file transformer: BFL's .safetensors or a "
                                                                 "quantized .gguf (docs/deploy-flux.md).")]
LocalLoraOpt = Annotated[Optional[list[str]], typer.Option("--lora", help="LoRA adapter PATH[:SCALE] (a "
                                                            ".safetensors; repeatable: they apply together).")]
QuantizeOpt = Annotated[Optional[str], typer.Option(help="off, int8 or fp8: torchao weight-only quantization of the "
                                                         "transformer at load time.")]
ModelOpt = Annotated[str, typer.Option(help="'default', 'random', or a diffusers folder.")]
PreserveOpt = Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help=PRESERVE_HELP)]
GlyphGuidanceOpt = Annotated[Optional[float], typer.Option(min=0.0, max=MAX_GLYPH_GUIDANCE, help=GLYPH_GUIDANCE_HELP)]
SeedOpt = Annotated[int, typer.Option(help="Seed (same seed, same output).")]
StepsOpt = Annotated[int, typer.Option(min=1, max=150)]
GuidanceOpt = Annotated[float, typer.Option(min=0.1, max=99.0, help="Higher follows the prompt more closely.")]
FormatOpt = Annotated[Optional[str], typer.Option("--format", help="jpeg, png or webp; default: from -o.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda …")]
PresetOpt = Annotated[str, typer.Option(help="none, auto or fast (docs/gpu.md).")]
AccelOpt = Annotated[str, typer.Option(help="Acceleration overrides (docs/gpu.md); compile is off: a one-off run "
                                           "does not wait to compile.")]


@app.command()
def edit(
    image: Annotated[Path, typer.Argument(help="Image to edit.", exists=True, dir_okay=False)],
    prompt: Annotated[str, typer.Argument(help="The instruction, e.g. \"Change 'KELLAR' to 'SUMITH'\".")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the result.")] = Path("edited.png"),
    reference: Annotated[Optional[list[Path]], typer.Option("--reference", "-r", exists=True, dir_okay=False,
                                                            help="Extra reference image (up to 3).")] = None,
    seed: SeedOpt = 0,
    steps: StepsOpt = 50,
    guidance: GuidanceOpt = 3.0,
    preserve: PreserveOpt = None,
    glyph_guidance: GlyphGuidanceOpt = None,
    output_format: FormatOpt = None,
    model: ModelOpt = "default",
    device: DeviceOpt = "auto",
    accel_preset: PresetOpt = "auto",
    accel_options: AccelOpt = "compile=off",
    transformer_file: TransformerFileOpt = None,
    quantize: QuantizeOpt = None,
    lora: LocalLoraOpt = None,
) -> None:
    """Edit an image on this machine, without a server."""
    from .engine.images import decode_image

    if len(reference or []) > 3:
        raise typer.BadParameter("at most 3 extra references (4 images in all)", param_hint="--reference")
    images = [decode_image(path.read_bytes(), max_pixels=100_000_000) for path in [image, *(reference or [])]]
    loading = dict(model=model, device=device, preset=accel_preset, overrides=accel_options,
                   transformer_file=transformer_file, quantize=quantize, adapters=_adapters(lora))  # fmt: skip
    _run_locally(images, prompt, output, output_format, loading, seed=seed, steps=steps, guidance=guidance,
                 preserve=preserve, glyph_guidance=glyph_guidance)  # fmt: skip


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw, e.g. \"A red creature on a beach\".")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the result.")] = Path("image.png"),
    aspect_ratio: Annotated[str, typer.Option(help="Between 21:9 and 9:21.")] = "1:1",
    seed: SeedOpt = 0,
    steps: StepsOpt = 50,
    guidance: GuidanceOpt = 3.0,
    output_format: FormatOpt = None,
    model: ModelOpt = "default",
    device: DeviceOpt = "auto",
    accel_preset: PresetOpt = "auto",
    accel_options: AccelOpt = "compile=off",
    transformer_file: TransformerFileOpt = None,
    quantize: QuantizeOpt = None,
    lora: LocalLoraOpt = None,
) -> None:
    """Text-to-image on this machine, without a server."""
    from .engine.buckets import parse_aspect_ratio

    try:
        ratio = parse_aspect_ratio(aspect_ratio)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--aspect-ratio") from None
    loading = dict(model=model, device=device, preset=accel_preset, overrides=accel_options,
                   transformer_file=transformer_file, quantize=quantize, adapters=_adapters(lora))  # fmt: skip
    _run_locally([], prompt, output, output_format, loading, seed=seed, steps=steps, guidance=guidance,
                 aspect_ratio=ratio)  # fmt: skip


def _adapters(specs: list[str] | None):
    """``--lora PATH[:SCALE]`` options → adapters (named after their files)."""
    from .engine.adapters import AdapterError, parse_adapters

    try:
        return parse_adapters(specs or ())
    except AdapterError as exc:
        raise typer.BadParameter(str(exc), param_hint="--lora") from None


def _run_locally(images, prompt: str, output: Path, output_format: str | None, loading: dict,
                 **sampling) -> None:  # fmt: skip
    """Load the model (``loading``: start_engine's arguments), run one edit (or generation) with a progress bar with
    every adapter of ``loading`` applied at its scale, write the result."""
    from rich.markup import escape

    from .engine.acceleration.options import AccelerationError
    from .engine.adapters import AdapterError
    from .engine.images import OUTPUT_FORMATS, encode_image
    from .engine.loading import ModelNotFoundError
    from .engine.startup import start_engine

    _setup_logging("WARNING")
    fmt = output_format or {".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}.get(output.suffix.lower(), "png")
    if fmt not in OUTPUT_FORMATS:
        raise typer.BadParameter(f"unknown format {fmt}; use jpeg, png or webp")
    try:
        engine = start_engine(**loading)
    except (AccelerationError, AdapterError, ModelNotFoundError) as exc:  # the option or file it names is wrong
        console.print(f"[red]cannot load the model:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    sampling["loras"] = tuple((adapter.name, adapter.scale) for adapter in loading["adapters"])
    if engine.info.placeholder:
        console.print(f"[yellow]Note:[/yellow] model is {engine.info.name}: {engine.info.description}.")
    started = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                  console=console) as bar:  # fmt: skip
        task = bar.add_task(f"{'editing' if images else 'generating'} on {engine.device}", total=sampling["steps"])
        # the total comes with each step: a model that draws the word to write samples twice (engine/kontext.py)
        result = engine.edit(images, prompt, **sampling,
                             on_step=lambda step, total, _: bar.update(task, completed=step, total=total))  # fmt: skip
    output.write_bytes(encode_image(result, fmt))
    seconds = time.perf_counter() - started
    console.print(f"wrote {output} ({result.width}x{result.height}, seed {sampling['seed']}, {seconds:.1f} s)")


def _client(server: str, key: str | None):
    from .client import Client

    return Client(server, api_key=key)


@app.command()
def submit(
    image: Annotated[Path, typer.Argument(help="Image to edit.")],
    prompt: Annotated[str, typer.Argument(help="The instruction.")],
    seed: Annotated[Optional[int], typer.Option()] = None,
    steps: Annotated[Optional[int], typer.Option()] = None,
    guidance: Annotated[Optional[float], typer.Option()] = None,
    output_format: Annotated[Optional[str], typer.Option("--format")] = None,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = None,
) -> None:
    """Submit an edit to a running server; prints the task id."""
    with _client(server, key) as client:
        response = client.submit(prompt, image, seed=seed, steps=steps, guidance=guidance, output_format=output_format)
    typer.echo(response["id"])


@app.command()
def poll(
    task_id: Annotated[str, typer.Argument(help="Task id from submit.")],
    wait: Annotated[bool, typer.Option(help="Keep polling until the task ends.")] = False,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = None,
) -> None:
    """Print a task's status (JSON), optionally waiting for it to end."""
    import json

    from .client import has_ended

    with _client(server, key) as client:
        state = client.get_result(task_id)
        while wait and not has_ended(state["status"]):
            time.sleep(0.5)
            state = client.get_result(task_id)
    typer.echo(json.dumps(state, indent=2))


@app.command()
def download(
    task_id: Annotated[str, typer.Argument(help="Task id from submit.")],
    output: Annotated[Path, typer.Option("--output", "-o")] = Path("result"),
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = None,
) -> None:
    """Wait for a task and save its result (the extension is added from the format)."""
    from .client import OpenKontextError

    with _client(server, key) as client:
        try:
            state = client.wait(task_id)
        except OpenKontextError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1)
        data = client.download(state["result"]["sample"])
    suffix = "." + state["result"]["sample"].split("?")[0].rsplit(".", 1)[-1]
    path = output if output.suffix else output.with_suffix(suffix)
    path.write_bytes(data)
    typer.echo(str(path))


def bench_editor(model: str, **engine_settings):
    """``--model`` for the benchmark: a built-in reference editor's name, or a model for ``load_engine``, built with
    ``engine_settings`` (``preserve``, ``glyph_guidance``)."""
    from .engine.loading import load_engine
    from .quality.cli import BUILTIN_EDITORS, builtin_factory
    from .quality.editors import engine_editor

    if model in BUILTIN_EDITORS:
        return builtin_factory(model, **engine_settings)
    engine = load_engine(model, **engine_settings)
    if engine.info.placeholder:
        console.print(f"[yellow]Note:[/yellow] model is {engine.info.name}: {engine.info.description}.")
    return engine_editor(engine)


def _register_subcommands() -> None:
    from .cluster_cli import app as cluster_app
    from .jobs.db_cli import app as db_app
    from .quality.cli import make_app as make_bench_app
    from .toyworld.cli import app as toyworld_app
    from .training.cli import app as train_app

    app.add_typer(toyworld_app, name="toyworld")
    app.add_typer(make_bench_app(bench_editor), name="bench")
    app.add_typer(train_app, name="train")
    app.add_typer(db_app, name="db")
    app.add_typer(cluster_app, name="cluster")


_register_subcommands()

if __name__ == "__main__":
    app()

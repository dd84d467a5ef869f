"""``openkontext cluster``: size, inspect and stop the pool of model workers on a Ray cluster (``cluster.py``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(help="Model workers as Ray actors, one per GPU (or CPU slot), sharing the job store.",
                  no_args_is_help=True)  # fmt: skip
console = Console(stderr=True)

AddressOpt = Annotated[str, typer.Option(envvar="RAY_ADDRESS", help="Ray cluster address ('auto': this machine's).")]
DrainOpt = Annotated[float, typer.Option(min=0, help="Seconds a removed worker's running jobs may take to end "
                                                      "(then they are handed back to the queue).")]  # fmt: skip


_output = None  # this command's own stdout, once Ray's driver is running (see _connect)


def _connect(address: str) -> None:
    """Join the cluster. From here on ``sys.stdout`` is stderr: Ray's driver prints the cluster's events (a node
    marked dead, an actor restarting …) to ``sys.stdout`` from a thread of its own, which would mix them into the
    table or the JSON that scripts read; the command's output goes to ``_stdout()``."""
    global _output
    from . import cluster

    if _output is None:
        _output, sys.stdout = sys.stdout, sys.stderr
    try:
        cluster.connect(address)
    except ConnectionError as exc:
        console.print(f"[red]cannot reach the Ray cluster at {escape(address)}:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


@app.command()
def scale(
    size: Annotated[int, typer.Argument(min=0, help="Number of workers the pool should have (0 stops it).")],
    address: AddressOpt = "auto",
    gpus_per_worker: Annotated[Optional[float], typer.Option(min=0, help="GPUs per worker (default: 1 when the "
                                                                         "cluster has GPUs, else 0).")] = None,
    cpus_per_worker: Annotated[float, typer.Option(min=0, help="CPUs reserved per worker.")] = 1.0,
    threads: Annotated[int, typer.Option(min=1, help="Worker threads per actor (jobs it runs at once).")] = 1,
    model: Annotated[Optional[str], typer.Option(help="'default', 'random', or a diffusers folder on every node.")] = None,
    database_url: Annotated[Optional[str], typer.Option(help="The shared job store (PostgreSQL).")] = None,
    storage_url: Annotated[Optional[str], typer.Option(help="The shared storage (s3://…).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Data dir (a shared folder when storage is local).")] = None,
    drain_timeout: DrainOpt = 600.0,
) -> None:
    """Start the pool, or change its size: new workers load the model before this returns; removed ones are
    drained first. Settings are this shell's OPENKONTEXT_* variables, with the options above on top."""
    from pydantic import ValidationError

    from . import cluster
    from .config import Settings

    fields = dict(model=model, database_url=database_url, storage_url=storage_url,
                  data_dir=data_dir.resolve() if data_dir else None, workers=threads)  # fmt: skip
    overrides = {f"OPENKONTEXT_{name.upper()}": str(value) for name, value in fields.items() if value is not None}
    env = cluster.worker_env(overrides)
    try:  # refuse bad settings here, before any actor tries them
        settings = Settings(**{name: value for name, value in fields.items() if value is not None})
    except ValidationError as exc:
        console.print(f"[red]cannot start workers:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    if "OPENKONTEXT_DATA_DIR" not in env:
        env["OPENKONTEXT_DATA_DIR"] = str(settings.data_dir.resolve())  # actors start in Ray's own folders
    if settings.database_url is None:
        console.print("[yellow]Note:[/yellow] no OPENKONTEXT_DATABASE_URL: workers share the data dir's SQLite file, "
                      "which only works on this machine (use PostgreSQL for a cluster).")  # fmt: skip
    _connect(address)
    gpus = cluster.default_gpus_per_worker() if gpus_per_worker is None else gpus_per_worker
    try:
        states = cluster.scale(size, env=env, gpus=gpus, cpus=cpus_per_worker, drain_timeout_s=drain_timeout)
    except cluster.ClusterError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True)
        raise typer.Exit(1) from None
    _print(states)


@app.command()
def status(
    address: AddressOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON (with each actor's node id and "
                                                         "pid) instead of the table.")] = False,
) -> None:
    """The pool's workers: node, jobs running now, finished and taken over since the worker (re)started."""
    from . import cluster

    _connect(address)
    states = cluster.status()
    if as_json:  # one object per actor; "report" is null while it loads its model or is being restarted
        print(json.dumps([{"actor": state.name, "report": state.report} for state in states], indent=2),
              file=_stdout(), flush=True)  # fmt: skip
    else:
        _print(states)


@app.command()
def stop(address: AddressOpt = "auto", drain_timeout: DrainOpt = 600.0) -> None:
    """Drain and remove every worker of the pool."""
    from . import cluster

    _connect(address)
    cluster.stop(drain_timeout)
    console.print("pool stopped")


def _print(states) -> None:
    table = Table("actor", "worker id", "node", "running", "finished", "takeovers", title=f"{len(states)} worker(s)")
    for state in states:
        if state.report is None:
            table.add_row(state.name, "(loading or restarting)", "", "", "", "")
        else:
            report = state.report
            table.add_row(state.name, report["id"], report["node"][:12], str(report["running"]),
                          str(report["finished"]), str(report["takeovers"]))  # fmt: skip
    Console(file=_stdout(), width=160).print(table)  # stdout, one width whatever the terminal (scripts read it)


def _stdout():
    return _output or sys.stdout

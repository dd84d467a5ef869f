"""``openkontext toyworld …``: export samples to disk, measure generation speed."""

from __future__ import annotations

from pathlib import Path

import typer

from openkontext.sizes import parse_size

app = typer.Typer(help="The toy world: procedural (input, instruction, target) edit data.", no_args_is_help=True)


def parse_categories(categories: str | None) -> list[str] | None:
    return [c.strip() for c in categories.split(",") if c.strip()] if categories else None


@app.command()
def export(out: Path = typer.Option(..., "--out", help="output directory"),
           n: int = typer.Option(100, "--n", help="number of samples"),
           split: str = typer.Option("train", help="train or heldout"),
           size: str = typer.Option("256", help="256 or WIDTHxHEIGHT"),
           categories: str = typer.Option(None, help="comma-separated, e.g. local,text (default: all)"),
           start_seed: int = typer.Option(0, help="first seed"),
           workers: int = typer.Option(None, help="processes (default: all CPUs)")) -> None:
    """Write N samples as PNG files plus manifest.jsonl."""
    from .export import export as run_export
    manifest = run_export(out, n, split, parse_size(size, square=True), parse_categories(categories), start_seed,
                          workers)  # fmt: skip
    typer.echo(f"wrote {n} samples to {manifest}")


@app.command()
def speed(n: int = typer.Option(2000, "--n"), size: int = typer.Option(256),
          workers: int = typer.Option(None, help="processes (default: all CPUs)")) -> None:
    """Measure samples per second (one process and the multi-process stream)."""
    from .speed import main
    args = ["--n", str(n), "--size", str(size)] + (["--workers", str(workers)] if workers else [])
    main(args)


@app.command()
def sheet(out: Path = typer.Option(..., "--out", help="PNG file to write"),
          n: int = typer.Option(8, "--n"), split: str = typer.Option("train"), size: str = typer.Option("256"),
          categories: str = typer.Option(None), start_seed: int = typer.Option(0)) -> None:
    """A contact sheet (input | target | mask + instruction per row) for looking at the data."""
    from .export import contact_sheet
    from .sample import generate
    size_, cats = parse_size(size, square=True), parse_categories(categories)
    samples = [generate(start_seed + i, split=split, size=size_, categories=cats) for i in range(n)]
    contact_sheet(samples).save(out)
    typer.echo(f"wrote {out}")

"""``openkontext bench …``: run the benchmark or a parameter sweep for an editor.

The command line names an editor with ``--model``; turning that name into an editor is the caller's job
(``make_app(editor_factory)``), so this module stays independent of model loading. The module-level ``app``
knows the built-in editors only: copy_input, wrong_edit and unrelated_scene.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import typer

from openkontext.engine.model_info import MAX_GLYPH_GUIDANCE
from openkontext.sizes import parse_size
from openkontext.toyworld.cli import parse_categories

from .editors import copy_input, unrelated_scene, wrong_edit
from .runner import ENGINE_SETTINGS

GLYPH_GUIDANCE_HELP = "an aligned model's glyph guidance scale (1: plain; default: the model's own)"
BUILTIN_EDITORS = {"copy_input": copy_input, "wrong_edit": wrong_edit, "unrelated_scene": unrelated_scene}


def builtin_factory(model: str, **engine_settings):
    """A built-in reference editor; ``engine_settings`` (paste-back, glyph guidance) apply to models only."""
    if engine_settings:
        name = next(iter(engine_settings))
        raise typer.BadParameter(f"--{name.replace('_', '-')} applies to models, not to the built-in editors",
                                 param_hint=f"--{name.replace('_', '-')}")  # fmt: skip
    try:
        return BUILTIN_EDITORS[model]
    except KeyError:
        raise typer.BadParameter(f"unknown editor {model!r}; built-in editors: {', '.join(BUILTIN_EDITORS)}")


def main(editor, name: str, n: int = 10, categories=None, out_dir: str | Path = "bench-out", size=256,
         steps: int = 50, guidance: float = 3.0, seed_start: int = 0, grid_rows: int = 4):
    """Run the benchmark for ``editor`` (plus the floor and ceiling references), write the report, print the
    table; returns the ``BenchResult``."""
    from rich.console import Console
    from rich.progress import Progress

    from .report import print_table
    from .runner import run_bench

    console = Console(width=max(Console().width, 140))
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"bench {name}", total=None)
        result = run_bench(editor, n, categories, size, out_dir, seed_start, name=name, steps=steps,
                           guidance=guidance, grid_rows=grid_rows,
                           progress=lambda i, total: bar.update(task, completed=i, total=total))
    print_table(result.summaries, console)
    console.print(f"report: {Path(out_dir) / 'report.html'}  results: {Path(out_dir) / 'results.json'}")
    return result


def bench_categories(value: str | None) -> list[str] | None:
    """--categories of the benchmark: categories, or edit families whose cases alone are drawn."""
    from openkontext.toyworld.sample import check_kinds

    cats = parse_categories(value)
    try:
        return list(check_kinds(cats)) if cats else None
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--categories") from None


def make_app(editor_factory: Callable[[str], Callable] = builtin_factory) -> typer.Typer:
    """A Typer app whose ``--model`` is turned into an editor by ``editor_factory``."""
    app = typer.Typer(help="Quality benchmark on held-out toy-world edits.", no_args_is_help=True)

    @app.command()
    def run(model: str = typer.Option("default", "--model", help="model path, 'default', or a built-in editor"),
            n: int = typer.Option(10, "--n", help="cases per category (per family, for a family named)"),
            categories: str = typer.Option(None, help="comma-separated categories or edit families (default: all "
                                                      "categories)"),
            size: str = typer.Option("256", help="256 or WIDTHxHEIGHT"),
            out: Path = typer.Option(Path("bench-out"), "--out"),
            steps: int = typer.Option(50), guidance: float = typer.Option(3.0),
            seed_start: int = typer.Option(0),
            preserve: float = typer.Option(None, min=0.0, max=1.0,
                                           help="paste-back threshold (0: off; default: the model's own)"),
            glyph_guidance: float = typer.Option(None, min=0.0, max=MAX_GLYPH_GUIDANCE, help=GLYPH_GUIDANCE_HELP),
            ) -> None:  # fmt: skip
        """Score an editor and the copy-input / ground-truth references; write results.json and report.html."""
        cats = bench_categories(categories)
        editor = _editor(editor_factory, model, preserve=preserve, glyph_guidance=glyph_guidance)
        main(editor, model, n, cats, out,
             parse_size(size, square=True), steps, guidance, seed_start)  # fmt: skip

    @app.command()
    def sweep(model: str = typer.Option("default", "--model"),
              param: str = typer.Option("guidance", help="guidance, steps, preserve (the paste-back threshold) or "
                                                         "glyph_guidance"),
              values: str = typer.Option("1.5,2.5,3.5,5", help="comma-separated values"),
              n: int = typer.Option(5, "--n"), categories: str = typer.Option(None),
              size: str = typer.Option("256"), out: Path = typer.Option(Path("bench-out"), "--out"),
              steps: int = typer.Option(50), guidance: float = typer.Option(3.0),
              seed_start: int = typer.Option(0, help="choose settings on other seeds than the benchmark's (0)"),
              preserve: float = typer.Option(None, min=0.0, max=1.0, help="paste-back threshold"),
              glyph_guidance: float = typer.Option(None, min=0.0, max=MAX_GLYPH_GUIDANCE,
                                                   help=GLYPH_GUIDANCE_HELP)) -> None:
        """Success rate and each category's quality figure against guidance, steps, the paste-back threshold or
        the glyph guidance scale."""
        from rich.console import Console
        from rich.table import Table

        from .runner import SWEEP_PARAMS
        from .runner import sweep as run_sweep
        if param not in SWEEP_PARAMS:
            raise typer.BadParameter(f"one of {', '.join(SWEEP_PARAMS)}", param_hint="--param")
        points = _sweep_values(param, values)
        cats = bench_categories(categories)
        settings = dict(preserve=preserve, glyph_guidance=glyph_guidance)
        if param in ENGINE_SETTINGS:
            def editor_at(value):
                return _editor(editor_factory, model, **(settings | {param: value}))
        else:
            editor = _editor(editor_factory, model, **settings)

            def editor_at(_value):
                return editor
        result = run_sweep(editor_at, param, points, n, cats, parse_size(size, square=True),
                           out, seed_start, steps=steps, guidance=guidance)  # fmt: skip
        table = Table(title=f"success rate vs {param}")
        cats = [k for k in result["rows"][0] if k != param]
        for col in [param] + cats:
            table.add_column(col)
        for row in result["rows"]:
            table.add_row(str(row[param]), *[f"{row[c]:.0%}" for c in cats])
        Console().print(table)
        quality = Table(title=f"quality vs {param}: category figure / preservation (dB)")
        for col in [param] + [f"{c} ({result['quality'][0][c]['metric']})" for c in cats]:
            quality.add_column(col)
        for row in result["quality"]:
            quality.add_row(str(row[param]), *[_figure(row[c]["value"]) + " / " + _figure(row[c]["preservation"])
                                               for c in cats])  # fmt: skip
        Console().print(quality)

    @app.command()
    def families(results: list[Path] = typer.Argument(..., help="results.json files or the folders holding them"),
                 editor: str = typer.Option(None, "--editor", help="whose cases (default: each file's one editor "
                                                                    "besides copy_input and ground_truth)"),
                 markdown: bool = typer.Option(False, "--markdown", help="a Markdown table instead")) -> None:
        """Successes per edit family (e.g. text: remove_text, add_text, replace_text), one column per results file
        and their sum, from earlier `bench run` outputs."""
        from rich.console import Console
        from rich.table import Table

        from .report import family_table, markdown as markdown_text

        columns = {}
        for path in results:
            name, records = _editor_records(path, editor)
            columns[f"{path} ({name})" if len(results) > 1 else name] = records
        head, rows = family_table(columns)
        if markdown:
            typer.echo(markdown_text(head, rows))
            return
        table = Table(title="successes per edit family")
        for col in head:
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(*row)
        Console(width=max(Console().width, 120)).print(table)

    return app


def _editor_records(path: Path, editor: str | None) -> tuple[str, list[dict]]:
    """The cases of ``editor`` (else of the file's one editor under test) in a bench results file or folder."""
    import json

    from .editors import REFERENCES

    file = path / "results.json" if path.is_dir() else path
    try:
        cases = json.loads(file.read_text())["cases"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise typer.BadParameter(f"not a bench results file: {file} ({exc})", param_hint="RESULTS")
    if editor is None:
        tested = [name for name in cases if name not in REFERENCES]
        if len(tested) != 1:
            raise typer.BadParameter(f"choose one with --editor: {file} holds {', '.join(cases)}",
                                     param_hint="--editor")  # fmt: skip
        editor = tested[0]
    if editor not in cases:
        raise typer.BadParameter(f"no editor {editor!r} in {file} (it has {', '.join(cases)})", param_hint="--editor")
    return editor, cases[editor]


def _editor(editor_factory, model: str, **engine_settings):
    """The factory's editor; engine settings (ENGINE_SETTINGS: the paste-back threshold, the glyph guidance scale)
    are passed only when asked for."""
    return editor_factory(model, **{name: value for name, value in engine_settings.items() if value is not None})


def _sweep_values(param: str, values: str) -> list:
    cast = int if param == "steps" else float
    try:
        points = [cast(v) for v in values.split(",")]
    except ValueError:
        raise typer.BadParameter(f"comma-separated {cast.__name__} values, got {values!r}", param_hint="--values")
    if param == "preserve" and not all(0.0 <= v <= 1.0 for v in points):
        raise typer.BadParameter("paste-back thresholds lie in 0-1", param_hint="--values")
    if param == "glyph_guidance" and not all(0.0 <= v <= MAX_GLYPH_GUIDANCE for v in points):
        raise typer.BadParameter(f"glyph guidance scales are 0 or more and at most {MAX_GLYPH_GUIDANCE:g} (1: plain "
                                 "sampling)", param_hint="--values")
    return points


def _figure(value) -> str:
    return "–" if value is None else f"{value:.2f}"


app = make_app()

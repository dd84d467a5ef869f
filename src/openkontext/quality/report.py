"""The benchmark's outputs for people: an HTML report (tables + image grids, no external assets) and a
terminal table."""

from __future__ import annotations

import html
from pathlib import Path

COLUMNS = (("success_rate", "success", "{:.0%}"), ("preservation", "preservation", "{:.2f}"),
           ("psnr_mask_target", "PSNR mask→target", "{:.1f}"), ("psnr_target", "PSNR→target", "{:.1f}"),
           ("identity_psnr", "identity PSNR", "{:.1f}"), ("content_score", "content", "{:.0%}"),
           ("turn_success", "turn success", "{:.0%}"), ("seconds_per_case", "s/case", "{:.2f}"))

PRESERVATION_UNIT = {"local": "PSNR outside mask vs input (dB)", "text": "PSNR outside mask vs input (dB)",
                     "global": "PSNR on the subjects vs input (dB)", "style": "PSNR at 1/8 scale vs target (dB)",
                     "character_reference": "colour-histogram overlap with the reference (0-1)",
                     "text_to_image": "(none)", "iterative": "PSNR of never-edited pixels vs the first input, "
                                                             "last turn (dB)"}


def _fmt(value, spec: str) -> str:
    if value is None:
        return "–"
    return spec.format(value)


def table_rows(summaries: dict[str, dict]) -> list[list[str]]:
    rows = []
    cats = list(dict.fromkeys(c for s in summaries.values() for c in s))
    for cat in cats:
        for editor, summ in summaries.items():
            s = summ.get(cat)
            if s is None:
                continue
            rows.append([cat, editor, str(s["n"])] + [_fmt(s.get(k), spec) for k, _, spec in COLUMNS])
    return rows


def header() -> list[str]:
    return ["category", "editor", "n"] + [label for _, label, _ in COLUMNS]


def print_table(summaries: dict[str, dict], console=None) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        print("\t".join(header()))
        for row in table_rows(summaries):
            print("\t".join(row))
        return
    table = Table(title="OpenKontext toy-world benchmark (held-out split)")
    for col in header():
        table.add_column(col)
    last = None
    for row in table_rows(summaries):
        if last is not None and row[0] != last:
            table.add_section()
        last = row[0]
        table.add_row(*row)
    (console or Console()).print(table)


def markdown(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def markdown_table(summaries: dict[str, dict]) -> str:
    return markdown(header(), table_rows(summaries))


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,td:nth-child(2){text-align:left}
.grid img{width:192px;image-rendering:auto;border:1px solid #ddd}
.grid td{text-align:center;vertical-align:top}.ok{color:#080}.bad{color:#b00}
.prompt{max-width:600px;text-align:left!important;font-size:90%}
"""


def write_html(result, grids: dict[str, list[dict]], path: Path) -> None:
    cfg = result.config
    families = f" (of the families {', '.join(cfg['families'])})" if cfg.get("families") else ""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>OpenKontext bench: "
             f"{html.escape(cfg['editor'])}</title><style>{_CSS}</style></head><body>",
             f"<h1>Toy-world benchmark: {html.escape(cfg['editor'])}</h1>",
             f"<p>held-out split, {cfg['n_per_category']} cases per category{html.escape(families)},"
             f" size {cfg['size'][0]}×{cfg['size'][1]}, steps {cfg['steps']}, guidance {cfg['guidance']},"
             f" seed start {cfg['seed_start']}. "
             "Each figure reads between the <b>copy_input</b> floor and the <b>ground_truth</b> ceiling.</p>"]
    for cat in cfg["categories"]:
        parts.append(f"<h2 id='{cat}'>{html.escape(cat)}</h2>")
        parts.append(f"<p>preservation: {html.escape(PRESERVATION_UNIT.get(cat, ''))}</p>")
        parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header()) + "</tr>")
        for row in table_rows({k: {cat: v[cat]} for k, v in result.summaries.items() if cat in v}):
            parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
        rows = grids.get(cat) or []
        if rows:
            parts.append("<table class='grid'><tr><th>input</th><th>output</th><th>target</th><th>prompt</th></tr>")
            for row in rows:
                for cell in row["cells"]:
                    imgs = "".join(f"<td><img src='{html.escape(p)}' alt=''></td>" if p else "<td>(none)</td>"
                                   for p in cell["images"])
                    mark = "<span class='ok'>✓</span>" if cell["success"] else "<span class='bad'>✗</span>"
                    parts.append(f"<tr>{imgs}<td class='prompt'>{mark} {html.escape(cell['prompt'])}</td></tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")


def family_successes(records: list[dict]) -> dict[tuple[str, str], tuple[int, int]]:
    """(successes, cases) per (category, edit family) of one editor's records; an iterative case counts each of
    its turns under ("iterative", the turn's family)."""
    counts: dict[tuple[str, str], list[int]] = {}
    for record in records:
        scored = record.get("turns") or [record]
        for case in scored:
            tally = counts.setdefault((record["category"], case["family"]), [0, 0])
            tally[0] += bool(case["success"])
            tally[1] += 1
    return {key: (k, n) for key, (k, n) in sorted(counts.items())}


def family_table(columns: dict[str, list[dict]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of successes per edit family, one column per set of records (e.g. one per results file)
    and their sum: what kinds of edit an editor carries out, which the per-category rates hide."""
    tallies = {name: family_successes(records) for name, records in columns.items()}
    keys = sorted({key for tally in tallies.values() for key in tally})
    rows = []
    for key in keys:
        cells = [tally.get(key) for tally in tallies.values()]
        k, n = sum(c[0] for c in cells if c), sum(c[1] for c in cells if c)
        rows.append([*key, *("–" if c is None else f"{c[0]}/{c[1]}" for c in cells), f"{k}/{n}", f"{k / n:.0%}"])
    return ["category", "family", *columns, "all", "success"], rows

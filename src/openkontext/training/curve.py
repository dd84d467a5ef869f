"""The learning curve of a run, read from its ``log.jsonl``: the probe per category (changed-token error over the
copy baseline's, at sigma 0.9; and over the empty prompt's) and the mean flow loss per stretch, against steps,
examples and hours of training.

Hours count the time between consecutive log lines, leaving out gaps longer than ``MAX_GAP_S`` (the run was
stopped), so a run resumed many times still reports the compute it spent.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from openkontext.toyworld import CATEGORIES

MAX_GAP_S = 300.0


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines() if line.strip()]


def training_hours(records: list[dict]) -> list[float]:
    """Hours of training up to each record (gaps over MAX_GAP_S left out)."""
    hours, total, last = [], 0.0, None
    for record in records:
        if last is not None and 0 <= record["time"] - last <= MAX_GAP_S:
            total += record["time"] - last
        last = record["time"]
        hours.append(total / 3600)
    return hours


def probe_table(run_dir: Path, batch: int, sigma: str = "0.9") -> str:
    """Markdown: one row per probe, changed / copy per category (below 1: better than copying the input)."""
    records = read_log(run_dir)
    hours = training_hours(records)
    rows = ["| step | examples | hours | " + " | ".join(CATEGORIES) + " | unchanged (local) |",
            "|---" * (4 + len(CATEGORIES)) + "|"]  # fmt: skip
    for record, hour in zip(records, hours):
        if record["stage"] != "probe":
            continue
        probe = record["probe"]
        cells = []
        for category in CATEGORIES:
            figures = probe.get(category, {}).get(sigma, {})
            changed, copy = figures.get("changed"), figures.get("copy")
            cells.append("–" if not changed or not copy else f"{changed / copy:.2f}")
        unchanged = probe.get("local", {}).get(sigma, {}).get("unchanged")
        rows.append(f"| {record['step']} | {record['step'] * batch:,} | {hour:.2f} | " + " | ".join(cells)
                    + f" | {unchanged if unchanged is not None else '–'} |")
    return "\n".join(rows)


def prompt_table(run_dir: Path, batch: int, sigma: str = "0.9") -> str:
    """Markdown: one row per probe, changed-token error with the prompt / with the empty prompt per category (below
    1: the prompt helps on the held-out phrasings; probes logged before this figure existed are left out)."""
    records = read_log(run_dir)
    hours = training_hours(records)
    rows = ["| step | examples | hours | " + " | ".join(CATEGORIES) + " |", "|---" * (3 + len(CATEGORIES)) + "|"]
    for record, hour in zip(records, hours):
        if record["stage"] != "probe" or not any("changed_empty" in c.get(sigma, {}) for c in record["probe"].values()):
            continue
        cells = []
        for category in CATEGORIES:
            figures = record["probe"].get(category, {}).get(sigma, {})
            changed, empty = figures.get("changed"), figures.get("changed_empty")
            cells.append("–" if not changed or not empty else f"{changed / empty:.2f}")
        rows.append(f"| {record['step']} | {record['step'] * batch:,} | {hour:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def loss_table(run_dir: Path, stretch: int = 1000) -> str:
    """Markdown: mean flow loss per ``stretch`` steps, split by the batches' image width."""
    records = [r for r in read_log(run_dir) if r["stage"] == "flow-base"]
    groups: dict[int, dict[str, list[float]]] = {}
    for record in records:
        group = groups.setdefault((record["step"] - 1) // stretch, {})
        group.setdefault(str(record.get("side", "?")), []).append(record["loss"])
        group.setdefault("all", []).append(record["loss"])
    sides = sorted({side for group in groups.values() for side in group if side != "all"}, key=str)
    rows = ["| steps | all | " + " | ".join(f"width {side}" for side in sides) + " |", "|---" * (2 + len(sides)) + "|"]
    for index in sorted(groups):
        group = groups[index]
        cells = [f"{sum(v) / len(v):.3f}" if (v := group.get(side)) else "–" for side in ["all", *sides]]
        rows.append(f"| {index * stretch + 1}–{(index + 1) * stretch} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _own_losses(lines: list[str], inherited: set[str] = frozenset()) -> dict[int, float]:
    """Step -> flow loss from a run's log lines, leaving out the lines in ``inherited`` (a branch's copy of its
    source's log); a step logged twice (a resume after a lost checkpoint) keeps its last value."""
    losses = {}
    for line in lines:
        if line.strip() and line not in inherited:
            record = json.loads(line)
            if record["stage"] == "flow-base":
                losses[record["step"]] = record["loss"]
    return losses


def paired_loss_table(run_dir: Path, branch_dir: Path, stretch: int = 1000) -> str:
    """Markdown: a branch's training loss against its source's, step by step, per ``stretch`` steps.

    A batch, its noise and its timesteps are a pure function of (seed, step), so the two runs' losses at one step
    differ only by their weights: the mean paired difference (branch - source) and its standard error show a
    recipe change (optimiser, rate, data weights) far sooner than two separate curves do. Only the branch's own
    log lines count: those it copied from the source when it was made are left out."""
    source_lines = (Path(run_dir) / "log.jsonl").read_text().splitlines()
    source = _own_losses(source_lines)
    branch = _own_losses((Path(branch_dir) / "log.jsonl").read_text().splitlines(), set(source_lines))
    groups: dict[int, list[int]] = {}
    for step in sorted(set(source) & set(branch)):
        groups.setdefault((step - 1) // stretch, []).append(step)
    rows = ["| steps | pairs | source loss | branch − source | ± (s.e.) | ratio |", "|---|---|---|---|---|---|"]
    for index, steps in sorted(groups.items()):
        diffs = [branch[s] - source[s] for s in steps]
        mean_source, mean = statistics.fmean(source[s] for s in steps), statistics.fmean(diffs)
        error = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
        rows.append(f"| {index * stretch + 1}–{(index + 1) * stretch} | {len(steps)} | {mean_source:.4f} | "
                    f"{mean:+.4f} | {error:.4f} | {(mean_source + mean) / mean_source:.3f} |")
    return "\n".join(rows)

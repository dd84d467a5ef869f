"""The quality benchmark: any editor on held-out toy-world cases, scored per category between the copy-input
floor and the ground-truth ceiling. See docs/toyworld.md."""

from .editors import Editor, copy_input, ground_truth, wrong_edit
from .runner import BenchResult, bench_cases, run_bench, sweep

__all__ = ["BenchResult", "Editor", "bench_cases", "copy_input", "ground_truth", "run_bench", "sweep", "wrong_edit"]

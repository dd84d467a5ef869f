"""Run the README's one-command examples on the shipped default model and write their outputs for the docs.

Each example is the exact `openkontext` command the README shows (run as a subprocess, so the images are what a
user gets from that command), one per capability of the API doc. Outputs go to docs/images/examples/.

    python scripts/readme_examples.py            # all examples (about a minute on 2 CPU cores)
    python scripts/readme_examples.py --print    # print the README's command block instead
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = "docs/images/examples"

# (capability, output file, openkontext arguments); paths are relative to the repository root.
EXAMPLES: list[tuple[str, str, list[str]]] = [
    ("text editing", "text.png", ["edit", "examples/sign.png", "Change 'KELLAR' to 'SUMITH'"]),
    ("local edit", "local.png", ["edit", "examples/scene.png", "Turn the orange heart blue."]),
    ("global edit", "global.png", ["edit", "examples/scene.png", "Turn it into night."]),
    ("character consistency", "character.png",
     ["edit", "examples/character.png", "Draw this creature on a beach, on the left, large."]),
    ("style transfer", "style.png", ["edit", "examples/scene.png", "Transform it into a Lego build."]),
    ("iterative editing (1/3)", "iterative-1.png", ["edit", "examples/scene.png", "Get rid of the pink ball."]),
    ("iterative editing (2/3)", "iterative-2.png", ["edit", f"{OUT}/iterative-1.png", "Turn the red tree yellow."]),
    ("iterative editing (3/3)", "iterative-3.png",
     ["edit", f"{OUT}/iterative-2.png", "Add one green star on the right."]),
    ("text-to-image", "text-to-image.png", ["generate", "A red creature on the left on a beach."]),
]  # fmt: skip


def command(args: list[str], output: str) -> list[str]:
    return ["openkontext", *args, "-o", f"{OUT}/{output}"]


def shell_line(argv: list[str]) -> str:
    """The command as the README prints it: like shlex.join, but "…" around arguments that hold a quote only."""
    def quote(arg: str) -> str:
        if "'" in arg and not any(c in arg for c in '"$`\\!'):
            return f'"{arg}"'
        return shlex.quote(arg)

    return " ".join(quote(arg) for arg in argv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--print", action="store_true", help="print the commands (for the README) and exit")
    options = parser.parse_args()
    if options.print:
        for capability, output, args in EXAMPLES:
            print(f"# {capability}\n{shell_line(command(args, output))}")
        return
    (ROOT / OUT).mkdir(parents=True, exist_ok=True)
    for capability, output, args in EXAMPLES:
        argv = command(args, output)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "openkontext.cli", *argv[1:]], cwd=ROOT, check=True)
        print(f"{capability}: {shell_line(argv)}  ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()

"""Print the classifiers' score distributions on the calibration sets, against the threshold tables.

    python -m openkontext.safety.calibrate            # summaries + per-tolerance flag rates
    python -m openkontext.safety.calibrate --verbose  # every prompt/image with its score

Prompt sets: ``data/benign_prompts.txt`` and ``data/unsafe_prompts.txt`` (clinical wording). Image set:
``benign_images.benign_images()`` (drawn with Pillow) plus scikit-learn's two bundled sample photos when
scikit-learn is installed. No unsafe images are used: none are shipped or downloaded (see docs/moderation.md).
"""

from __future__ import annotations

import argparse
from importlib import resources

import numpy as np

from .thresholds import IMAGE, PROMPT, TOLERANCES, ThresholdTable


def _lines(name: str) -> list[str]:
    text = resources.files(__package__).joinpath("data", name).read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def benign_prompts() -> list[str]:
    return _lines("benign_prompts.txt")


def unsafe_prompts() -> list[tuple[str, str]]:
    """(category, prompt) pairs."""
    pairs = (line.split("|", 1) for line in _lines("unsafe_prompts.txt"))
    return [(category.strip(), prompt.strip()) for category, prompt in pairs]


def sample_photos():
    """scikit-learn's bundled sample photos (a temple, a flower), if scikit-learn is installed."""
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        return []
    from PIL import Image

    data = load_sample_images()
    return [(f"photo-{name.rsplit('/', 1)[-1]}", Image.fromarray(a)) for name, a in zip(data.filenames, data.images)]


def summary(scores) -> str:
    s = np.asarray(scores, dtype=np.float64)
    if not len(s):
        return "n=0"
    q = np.percentile(s, [50, 90])
    return f"n={len(s):3d}  min {s.min():.3f}  median {q[0]:.3f}  p90 {q[1]:.3f}  max {s.max():.3f}"


def flag_rates(table: ThresholdTable, groups: dict[str, list], flags=None) -> list[str]:
    flags = flags or table.flags
    head = "tolerance  threshold  " + "  ".join(f"{name:>16}" for name in groups)
    rows = [head]
    for t in TOLERANCES:
        cells = []
        for scores in groups.values():
            flagged = sum(bool(flags(s, t)) for s in scores)
            cells.append(f"{flagged:3d}/{len(scores):<3d} flagged")
        rows.append(f"{t:9d}  {table.threshold(t):9.3f}  " + "  ".join(f"{c:>16}" for c in cells))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m openkontext.safety.calibrate", description=__doc__.split("\n")[0])
    parser.add_argument("--verbose", "-v", action="store_true", help="print every item's score")
    parser.add_argument("--skip-prompts", action="store_true")
    parser.add_argument("--skip-images", action="store_true")
    args = parser.parse_args(argv)

    if not args.skip_prompts:
        from .prompt_classifier import PromptClassifier

        classifier = PromptClassifier()
        benign = [(p, classifier.score(p)) for p in benign_prompts()]
        unsafe = [(c, p, classifier.score(p)) for c, p in unsafe_prompts()]
        print("== prompt classifier (all-MiniLM-L6-v2, max cosine similarity to data/unsafe_concepts.txt)")
        print(f"benign prompts : {summary([r.score for _, r in benign])}")
        print(f"unsafe prompts : {summary([r.score for _, _, r in unsafe])}")
        for category in dict.fromkeys(c for c, _, _ in unsafe):
            print(f"  {category:16}: {summary([r.score for c, _, r in unsafe if c == category])}")
        hits = sum(r.category == c for c, _, r in unsafe)
        print(f"unsafe prompts whose closest concept has the expected category: {hits}/{len(unsafe)}")
        if args.verbose:
            for p, r in sorted(benign, key=lambda item: -item[1].score):
                print(f"  benign {r.score:.3f}  [{r.category}]  {p}")
            for _, p, r in sorted(unsafe, key=lambda item: item[2].score):
                print(f"  unsafe {r.score:.3f}  [{r.category}]  {p}")
        from .moderation import ModerationConfig, Moderator

        mapping = Moderator(ModerationConfig(prompt_classifier=False, image_classifier=False))
        flags = lambda result, t: mapping.prompt_result_verdict(result, t).flagged  # noqa: E731 (category caps too)
        print("\n".join(flag_rates(PROMPT, {"benign": [r for _, r in benign], "unsafe": [r for _, _, r in unsafe]},
                                    flags)))  # fmt: skip
        minors = [r for c, _, r in unsafe if c == "minors"]
        print("\n".join(flag_rates(mapping.category_tables["minors"], {"unsafe minors": minors}, flags)))
        print()

    if not args.skip_images:
        from .benign_images import benign_images
        from .image_classifier import ImageClassifier

        classifier = ImageClassifier()
        drawn = [(name, classifier.score(image)) for name, image in benign_images()]
        photos = [(name, classifier.score(image)) for name, image in sample_photos()]
        print("== image classifier (open_nsfw NSFW probability)")
        print(f"benign drawn images : {summary([s for _, s in drawn])}")
        skin = [s for n, s in drawn if "skin" in n]
        print(f"  of which skin-toned (flat/gradient/tinted/swatches): {summary(skin)}")
        print(f"benign photos       : {summary([s for _, s in photos])}")
        if args.verbose:
            for name, s in sorted(drawn + photos, key=lambda item: -item[1]):
                print(f"  {s:.4f}  {name}")
        print("\n".join(flag_rates(IMAGE, {"benign": [s for _, s in drawn + photos]})))


if __name__ == "__main__":
    main()

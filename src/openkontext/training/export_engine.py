"""Editors for the benchmark from a run folder (its latest weights, no export needed) or from an exported folder."""

from __future__ import annotations

from pathlib import Path

from openkontext.engine.kontext import KontextEngine
from openkontext.engine.model_info import config_info

from .checkpoint import build_trained_pipeline


def engine_from_run(run_dir: Path, *, ema: bool = True) -> "Editor":
    pipeline, cfg, steps = build_trained_pipeline(Path(run_dir), ema=ema)
    info = config_info(cfg.architecture, name=f"run-{Path(run_dir).name}",
                       description=f"training run {run_dir} ({steps})", placeholder=False)  # fmt: skip
    return Editor(KontextEngine(pipeline, info))


def engine_from_folder(folder: Path) -> "Editor":
    from openkontext.engine.loading import load_engine

    return Editor(load_engine(str(folder), device="cpu"))


class Editor:
    """The benchmark's editor signature over a KontextEngine."""

    def __init__(self, engine: KontextEngine):
        self.engine = engine

    def __call__(self, images, prompt, *, seed, steps, guidance, width, height):
        return self.engine.edit(list(images), prompt, seed=seed, steps=steps, guidance=guidance, size=(width, height))

"""Editors for the quality benchmark from a run folder (its latest weights, no export needed) or an exported folder."""

from __future__ import annotations

from pathlib import Path

from openkontext.engine.kontext import KontextEngine
from openkontext.engine.model_info import config_info
from openkontext.quality.editors import Editor, engine_editor

from .checkpoint import build_trained_pipeline


def editor_from_run(run_dir: Path, *, ema: bool = True) -> Editor:
    pipeline, cfg, steps = build_trained_pipeline(Path(run_dir), ema=ema)
    info = config_info(cfg.architecture, name=f"run-{Path(run_dir).name}",
                       description=f"training run {run_dir} ({steps})", placeholder=False)  # fmt: skip
    return engine_editor(KontextEngine(pipeline, info))


def editor_from_folder(folder: Path) -> Editor:
    from openkontext.engine.loading import load_engine

    return engine_editor(load_engine(str(folder), device="cpu"))

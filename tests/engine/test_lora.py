"""LoRA adapters on the tiny model: each published key format changes the output exactly as its weights say, by the
scale; without adapters the output is the base model's, byte for byte; concurrent edits never see each other's."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from engine.lora_formats import FORMATS, merge, write_lora
from PIL import Image

from openkontext.engine.adapters import Adapter, AdapterError
from openkontext.engine.kontext import KontextEngine
from openkontext.engine.loading import load_engine


def picture(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "RGB").resize((64, 64))


def edit(engine, loras=(), seed: int = 3, steps: int = 2, on_step=None) -> np.ndarray:
    image = engine.edit([picture()], "make it blue", seed=seed, steps=steps, guidance=2.5, preserve=0, loras=loras,
                        on_step=on_step)  # fmt: skip
    return np.asarray(image).astype(np.int16)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One LoRA file per format for the tiny transformer, and the weight changes each means."""
    folder = tmp_path_factory.mktemp("loras")
    transformer = load_engine("tiny", device="cpu").pipeline.transformer
    written = {}
    for index, kind in enumerate(FORMATS):
        path = folder / f"{kind}.safetensors"
        written[kind] = (path, write_lora(kind, transformer, path, seed=index))
    return written


@pytest.fixture(scope="module")
def engine(files):
    adapters = [Adapter(name=kind, path=path) for kind, (path, _) in files.items()]
    return load_engine("tiny", device="cpu", adapters=adapters)


@pytest.fixture(scope="module")
def base():
    return edit(load_engine("tiny", device="cpu"))


def merged_output(files, choice) -> np.ndarray:
    """The output of a fresh tiny model whose weights have each chosen adapter's ΔW, times its scale, added."""
    reference = load_engine("tiny", device="cpu")
    for kind, scale in choice:
        merge(reference.pipeline.transformer, files[kind][1], scale)
    return edit(reference)


@pytest.mark.parametrize("kind", FORMATS)
def test_each_format_changes_the_output_as_its_weights_say_by_the_scale(engine, files, base, kind):
    changes = []
    for scale in (1.0, 0.5):
        output = edit(engine, [(kind, scale)])
        expected = merged_output(files, [(kind, scale)])
        # LoRA computes x·W + s·(x·A)·B; the reference x·(W + s·B·A): equal up to float rounding
        assert np.abs(output - expected).max() <= 2, (kind, scale)
        changes.append(np.abs(output - base).mean())
    assert changes[0] > 1.0, f"{kind}: the adapter barely changed the image"
    assert changes[1] < changes[0], f"{kind}: half the scale should change the image less"


def test_several_adapters_apply_together(engine, files, base):
    choice = [("peft", 0.7), ("xlabs", -0.5)]
    output = edit(engine, choice)
    assert np.abs(output - merged_output(files, choice)).max() <= 2
    assert np.abs(output - edit(engine, [("peft", 0.7)])).mean() > 0.5  # the second adapter counts


def test_without_adapters_the_output_is_the_base_models_byte_for_byte(engine, base):
    assert np.array_equal(edit(engine), base)  # loaded, not asked for
    edit(engine, [("kohya", 1.0)])
    assert np.array_equal(edit(engine), base)  # after an adapter ran
    assert np.array_equal(edit(engine, [("peft", 0.0)]), base)  # scale 0


def test_unloading_restores_the_base_model_byte_for_byte(files, base):
    engine = load_engine("tiny", device="cpu", adapters=[Adapter(name="peft", path=files["peft"][0])])
    edit(engine, [("peft", 1.0)])
    engine.pipeline.unload_lora_weights()
    assert not getattr(engine.pipeline.transformer, "peft_config", None)
    assert np.array_equal(edit(KontextEngine(engine.pipeline, engine.info)), base)


def test_an_unknown_adapter_is_refused_by_name(engine):
    with pytest.raises(AdapterError, match="unknown LoRA 'nope'.*peft, kohya, xlabs"):
        edit(engine, [("nope", 1.0)])
    with pytest.raises(AdapterError, match="no LoRA adapters loaded"):
        edit(load_engine("tiny", device="cpu"), [("peft", 1.0)])


def test_a_missing_or_unreadable_file_fails_at_load_with_its_name(tmp_path):
    with pytest.raises(AdapterError, match="'gone'.*file not found"):
        load_engine("tiny", device="cpu", adapters=[Adapter(name="gone", path=tmp_path / "gone.safetensors")])
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(AdapterError, match="'broken'.*could not be loaded"):
        load_engine("tiny", device="cpu", adapters=[Adapter(name="broken", path=broken)])


def test_concurrent_edits_with_different_adapters_never_see_each_others(engine):
    """Two worker threads, one with each adapter: each gets exactly its sequential output, and the second waits for
    the first to finish instead of switching the shared modules under it."""
    steps = 4
    references = {kind: edit(engine, [(kind, 1.0)], steps=steps) for kind in ("peft", "xlabs")}
    first_running, release_first = threading.Event(), threading.Event()
    events: list[str] = []
    outputs: dict[str, np.ndarray] = {}

    def run(kind: str, hold: bool) -> None:
        def on_step(step, total, preview):
            events.append(f"{kind}:{step}")
            if hold and step == 1:
                first_running.set()
                release_first.wait(10)  # the first edit holds its adapter mid-run while the second arrives

        outputs[kind] = edit(engine, [(kind, 1.0)], steps=steps, on_step=on_step)

    first = threading.Thread(target=run, args=("peft", True))
    first.start()
    assert first_running.wait(30)
    second = threading.Thread(target=run, args=("xlabs", False))
    second.start()
    second.join(0.5)
    assert second.is_alive() and not any(e.startswith("xlabs") for e in events), "the second edit did not wait"
    release_first.set()
    first.join(30)
    second.join(30)
    assert events == [f"peft:{i}" for i in range(1, steps + 1)] + [f"xlabs:{i}" for i in range(1, steps + 1)]
    for kind, output in outputs.items():
        assert np.array_equal(output, references[kind]), kind


def test_concurrent_edits_with_the_same_adapters_run_side_by_side(engine):
    both_running = threading.Barrier(2, timeout=30)
    outputs = []

    def run() -> None:
        def on_step(step, total, preview):
            if step == 1:
                both_running.wait()  # raises BrokenBarrierError unless both edits are sampling at once

        outputs.append(edit(engine, [("kohya", 0.8)], steps=3, on_step=on_step))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(outputs) == 2 and np.array_equal(outputs[0], outputs[1])


def test_waiting_edits_go_in_arrival_order(engine):
    """An edit for another adapter that waits is not overtaken by later edits for the running one (no starvation)."""
    hold, holding = threading.Event(), threading.Event()
    order: list[str] = []

    def run(name: str, kind: str, wait: bool = False) -> None:
        def on_step(step, total, preview):
            if step == 1:
                order.append(name)
                if wait:
                    holding.set()
                    hold.wait(10)

        edit(engine, [(kind, 1.0)], steps=1, on_step=on_step)

    threads = [threading.Thread(target=run, args=("A1", "peft", True))]
    threads[0].start()
    assert holding.wait(30)
    for name, kind in (("B", "xlabs"), ("A2", "peft")):
        threads.append(threading.Thread(target=run, args=(name, kind)))
        threads[-1].start()
        threads[-1].join(0.3)  # B arrives before A2
    assert order == ["A1"], "an edit started while A1 held its adapter: B must wait for it, and A2 for B"
    hold.set()
    for thread in threads:
        thread.join(30)
    assert order == ["A1", "B", "A2"]

"""The default recipe's mechanics on the tiny-glyph preset, on CPU, in seconds: encoded chunks reused and rebuilt
identically on resume, two chunk sizes, high-noise timesteps, per-sample change weights, the probe, warm start,
cooldown, and an export that the engine serves with its glyph strip and prompt-sized text."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from openkontext.engine.conditioning import GLYPH_INDEX, glyph_strip, glyph_strip_size, quoted_words
from openkontext.engine.configs import CONFIGS, build_pipeline
from openkontext.training.checkpoint import branch_for_cooldown, export, read_config, warm_start
from openkontext.training.config import FlowRecipe, preset
from openkontext.training.flow import draw_sigma, token_weights, weighted_mse
from openkontext.training.growth import twin_spread, widen
from openkontext.training.data import to_bytes
from openkontext.training.latents import ChunkedBatches, chunk_plan, encode, glyph_latents, steps_per_chunk
from openkontext.training import loop
from openkontext.training.loop import autocast_dtype, lr_factor, train_flow
from tiny_transformer import tiny_transformer_inputs


def _losses(records):
    return [(r["step"], r["loss"]) for r in records if r["stage"] == "flow-base"]


def test_chunks_are_encoded_once_reused_and_rebuilt_identically():
    cfg = preset("tiny-glyph")
    pipeline = build_pipeline(cfg.architecture, seed=0)
    assert steps_per_chunk(cfg) == 4  # 4 examples x 2 epochs / batch 2
    batches = ChunkedBatches(cfg, pipeline.vae, "line", torch.device("cpu"))
    first = [batches(step) for step in range(4)]
    # each example of the chunk appears exactly `reuse` times over the chunk's steps
    prompts = sorted(p for b in first for p in b.prompts)
    assert len(prompts) == 8 and all(prompts.count(p) % 2 == 0 for p in prompts)
    fresh = ChunkedBatches(cfg, pipeline.vae, "line", torch.device("cpu"))(2)  # a resumed run starts mid-chunk
    assert fresh.prompts == first[2].prompts and torch.equal(fresh.target, first[2].target)
    # glyph strips: as wide as the image, a quarter of its height (at least one token row), in latent units
    h, w = (8 * side for side in first[0].target.shape[-2:])
    assert first[0].glyphs.shape[-1] == first[0].target.shape[-1]
    assert first[0].glyphs.shape[-2] * 8 == glyph_strip_size(w, h)[1] == max(16, h // 4)
    # both sizes occur over the chunks, and both kinds (with a context, text-to-image)
    layouts = {chunk_plan(cfg, c)[:2] for c in range(40)}
    assert {size for size, _ in layouts} == {(32, 32), (64, 64)}
    assert {t2i for _, t2i in layouts} == {True, False}


@pytest.mark.parametrize("layout", ["line", "rows"])
def test_training_encodes_the_strip_the_engine_renders(layout):
    cfg = preset("tiny-glyph")
    vae = build_pipeline(cfg.architecture, seed=0).vae
    batch = ChunkedBatches(cfg, vae, layout, torch.device("cpu"))(4)  # chunk 1: a text edit quotes two words
    h, w = (8 * side for side in batch.target.shape[-2:])
    served = encode(vae, torch.stack([to_bytes(glyph_strip(p, w, h, layout)) for p in batch.prompts]))
    torch.testing.assert_close(batch.glyphs, served, atol=1e-4, rtol=0)  # blank strips are encoded apart (once)
    other = "rows" if layout == "line" else "line"
    quoting = [i for i, p in enumerate(batch.prompts) if quoted_words(p)]
    unlike = encode(vae, torch.stack([to_bytes(glyph_strip(p, w, h, other)) for p in batch.prompts]))
    assert quoting and not torch.equal(batch.glyphs[quoting], unlike[quoting])


def test_a_chunks_blank_glyph_images_are_encoded_once():
    vae = build_pipeline(preset("tiny-glyph").architecture, seed=0).vae
    strips = [torch.full((3, 32, 64), 255, dtype=torch.uint8) for _ in range(5)]
    strips[1][:, 10:20, 5:40] = 0
    strips[3][:, 2:6, 30:60] = 0
    encoded_images = []
    hook = vae.encoder.register_forward_hook(lambda module, args, output: encoded_images.append(len(args[0])))
    try:
        latents = glyph_latents(vae, strips, torch.device("cpu"))
    finally:
        hook.remove()
    assert sum(encoded_images) == 3  # the two drawn ones and one blank
    torch.testing.assert_close(latents, encode(vae, torch.stack(strips)), atol=1e-4, rtol=0)
    assert not torch.equal(latents[1], latents[0]) and torch.equal(latents[0], latents[4])
    drawn_only = glyph_latents(vae, [strips[1], strips[3]], torch.device("cpu"))
    torch.testing.assert_close(drawn_only, latents[[1, 3]], atol=1e-4, rtol=0)


def test_training_keeps_the_vae_in_channels_last_memory_when_asked(monkeypatch, tmp_path):
    pipelines = []
    monkeypatch.setattr(loop, "build_pipeline",
                        lambda *a, **k: pipelines.append(build_pipeline(*a, **k)) or pipelines[-1])

    def channels_last_convs() -> list[bool]:
        convs = [m.weight for m in pipelines[-1].vae.modules() if isinstance(m, torch.nn.Conv2d)]
        return [w.is_contiguous(memory_format=torch.channels_last) for w in convs]

    assert preset("tiny-glyph").vae_channels_last  # the default
    train_flow(preset("tiny-glyph"), tmp_path / "last", max_steps=1)
    assert channels_last_convs() and all(channels_last_convs())
    train_flow(preset("tiny-glyph", vae_channels_last=False), tmp_path / "plain", max_steps=1)
    assert not all(channels_last_convs())


def test_cpu_training_runs_in_bf16_only_where_the_cpu_computes_it(monkeypatch, tmp_path):
    cfg, cpu = preset("tiny-glyph"), torch.device("cpu")
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: False)
    assert autocast_dtype(cfg, cpu) is None
    fp32 = _losses(train_flow(cfg, tmp_path / "fp32", max_steps=4))
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: True)
    assert autocast_dtype(cfg, cpu) == torch.bfloat16
    assert autocast_dtype(preset("tiny-glyph", mixed_precision="no"), cpu) is None
    bf16 = _losses(train_flow(cfg, tmp_path / "bf16", max_steps=4))
    # the same chunks, noise and updates: bf16 differs from fp32 by rounding only, and it did differ
    assert [step for step, _ in bf16] == [step for step, _ in fp32] == [1, 2, 3, 4]
    assert [loss for _, loss in bf16] == pytest.approx([loss for _, loss in fp32], rel=0.05)
    assert bf16 != fp32
    # chunks encoded under autocast are kept in float32: the flow's noise mixing and targets are computed from them
    with torch.autocast("cpu", dtype=torch.bfloat16):
        batch = ChunkedBatches(cfg, build_pipeline(cfg.architecture, seed=0).vae, "line", cpu)(0)
    assert batch.target.dtype == batch.glyphs.dtype == torch.float32


def test_worker_processes_render_the_same_chunks_ahead_of_time():
    cfg = preset("tiny-glyph")
    pipeline = build_pipeline(cfg.architecture, seed=0)
    here = ChunkedBatches(cfg, pipeline.vae, "line", torch.device("cpu"))
    workers = ChunkedBatches(preset("tiny-glyph", data_workers=2), pipeline.vae, "line", torch.device("cpu"))
    try:
        steps = [0, 3, 4, 9, 5, 13]  # through consecutive chunks (rendered ahead), a jump ahead and one back
        for step in steps:
            a, b = here(step), workers(step)
            assert a.prompts == b.prompts and torch.equal(a.target, b.target) and torch.equal(a.masks, b.masks)
        assert workers.next[0] == 13 // steps_per_chunk(cfg) + 1  # the chunk after the last is under way
    finally:
        workers.close()


def test_resumed_chunked_training_repeats_the_uninterrupted_run(tmp_path):
    cfg = preset("tiny-glyph")
    straight = train_flow(cfg, tmp_path / "a")
    resumed = train_flow(cfg, tmp_path / "b", max_steps=3) + train_flow(cfg, tmp_path / "b")
    assert _losses(resumed) == _losses(straight)
    assert [s for s, _ in _losses(straight)] == list(range(1, 7))
    assert {r["text_tokens"] for r in straight} < set(range(8, 49, 8))  # prompt-sized, not the 48 cap


def test_high_noise_share_spares_the_categories_with_many_answers():
    recipe = FlowRecipe(high_noise_share=1.0, high_noise_min=0.9)
    config = {"base_image_seq_len": 256, "max_image_seq_len": 4096, "base_shift": 0.5, "max_shift": 1.15}
    cats = ["local"] * 200 + ["text_to_image"] * 200
    sigma = draw_sigma(recipe, cats, 256, config, torch.Generator().manual_seed(0))
    assert bool((sigma[:200] >= 0.9).all())
    assert float((sigma[200:] < 0.9).float().mean()) > 0.5
    plain = draw_sigma(FlowRecipe(), cats, 256, config, torch.Generator().manual_seed(0))
    assert float((plain[:200] < 0.9).float().mean()) > 0.5


def test_low_noise_share_covers_the_samplers_last_steps_for_every_category():
    config = {"base_image_seq_len": 256, "max_image_seq_len": 4096, "base_shift": 0.5, "max_shift": 1.15}
    cats = ["local", "text_to_image"] * 500
    plain = draw_sigma(FlowRecipe(high_noise_share=0.5), cats, 256, config, torch.Generator().manual_seed(0))
    assert float((plain < 0.1).float().mean()) < 0.01  # the logit-normal almost never reaches the last steps
    recipe = FlowRecipe(high_noise_share=0.5, low_noise_share=0.25, low_noise_max=0.2)
    sigma = draw_sigma(recipe, cats, 256, config, torch.Generator().manual_seed(0))
    for share in (sigma[0::2] < 0.1, sigma[1::2] < 0.1):  # local and text-to-image alike
        assert 0.08 < float(share.float().mean()) < 0.18  # ~ 0.25 x 0.1 / 0.2 = 12.5 %
    assert float(sigma.min()) > 0 and float((sigma <= 0.2).float().mean()) > 0.2


def test_per_sample_weights_give_small_and_large_changes_the_same_share():
    masks = torch.zeros(2, 64, 64)
    masks[0, :16, :16] = 1  # one token of 16 changed
    masks[1, :32, :] = 1  # half the tokens changed
    weights = token_weights(masks, 16, edit_weight=1.0, per_sample=True)
    changed = weights > 1
    for row, mask in zip(weights, changed):
        assert float(row[mask].sum() - mask.sum()) == pytest.approx(16.0)  # extra weight = 1 x the 16 tokens
    pred, target = torch.zeros(2, 16, 4), torch.zeros(2, 16, 4)
    target[0, 0] = 1.0  # sample 0 wrong on its one changed token
    # per sample: sample 0's loss is 17/32 (token weight 17 of 32), sample 1's is 0; the batch mean halves it
    assert weighted_mse(pred, target, weights, per_sample=True) == pytest.approx(17 / 32 / 2)


def test_the_probe_cache_is_kept_on_resume_and_encoded_afresh_for_another_glyph_layout(tmp_path):
    from openkontext.training.probe import Probe

    cfg = preset("tiny-glyph")
    pipeline = build_pipeline(cfg.architecture, seed=0)
    first = Probe(cfg, tmp_path, pipeline, torch.device("cpu"), cases=8)
    saved = (tmp_path / "probe.pt").stat().st_mtime_ns
    again = Probe(cfg, tmp_path, pipeline, torch.device("cpu"), cases=8)
    assert (tmp_path / "probe.pt").stat().st_mtime_ns == saved  # read back, not encoded again
    assert torch.equal(again.batches["text"].glyphs, first.batches["text"].glyphs)
    branched = dataclasses.replace(cfg, model="tiny-aligned")  # a run branched to the aligned canvas
    aligned = Probe(branched, tmp_path, pipeline, torch.device("cpu"), cases=8)
    assert aligned.batches["text"].glyphs.shape == aligned.batches["text"].target.shape  # image-sized canvases
    assert Probe(branched, tmp_path, pipeline, torch.device("cpu"), cases=8).batches["text"].glyphs.shape == \
        aligned.batches["text"].glyphs.shape  # and the cache now holds those


def test_a_resumed_run_probes_on_the_period_of_its_log_not_of_its_process(tmp_path):
    run = tmp_path / "run"
    cfg = preset("tiny-glyph", probe_every_s=3600, **{"flow.steps": 3})
    assert not [r for r in train_flow(cfg, run, max_steps=1) if r["stage"] == "probe"]  # an hour has not passed
    # the log says the run began two hours ago, as a run stopped and resumed every few minutes since would
    log = run / "log.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    log.write_text("".join(json.dumps({**record, "time": record["time"] - 7200}) + "\n" for record in lines))
    assert [r["step"] for r in train_flow(cfg, run, max_steps=1) if r["stage"] == "probe"] == [2]
    assert not [r for r in train_flow(cfg, run, max_steps=1) if r["stage"] == "probe"]  # it just ran


def test_probe_reports_every_category_against_the_copy_baseline(tmp_path):
    cfg = preset("tiny-glyph", probe_every_s=1e-9, **{"flow.steps": 1})
    records = train_flow(cfg, tmp_path / "run")
    probe = [r for r in records if r["stage"] == "probe"][0]["probe"]
    assert set(probe) == {"local", "global", "character_reference", "style", "text", "text_to_image", "iterative"}
    local = probe["local"]["0.9"]
    assert local["changed"] > 0 and local["copy"] >= 0 and local["unchanged"] > 0
    assert local["changed_empty"] > 0 and local["changed_empty"] != local["changed"]  # the empty prompt's error
    assert "changed_empty" not in probe["local"]["0.5"]
    assert probe["style"]["0.9"]["unchanged"] is None  # style changes every token
    assert (tmp_path / "run" / "probe.pt").exists()  # the same cases on resume

    from typer.testing import CliRunner

    from openkontext.training.cli import app

    printed = CliRunner().invoke(app, ["curve", "--run", str(tmp_path / "run"), "--stretch", "1"])
    assert printed.exit_code == 0, printed.output
    row = [line for line in printed.output.splitlines() if line.startswith("| 1 | 2 |")][0]  # step 1, 2 examples
    local = probe["local"]["0.9"]
    assert f"{local['changed'] / local['copy']:.2f}" in row if local["copy"] else "–" in row
    prompt_rows = printed.output.split("Prompt use")[1].split("Flow loss")[0].splitlines()
    row = [line for line in prompt_rows if line.startswith("| 1 | 2 |")][0]
    assert f"| {local['changed'] / local['changed_empty']:.2f} |" in row
    assert "| 1–1 |" in printed.output
    low = CliRunner().invoke(app, ["curve", "--run", str(tmp_path / "run"), "--sigma", "0.05"])
    row = [line for line in low.output.splitlines() if line.startswith("| 1 | 2 |")][0]
    local = probe["local"]["0.05"]  # the sampler's last steps: the low-noise point has its own row
    assert "sigma 0.05" in low.output
    assert f"{local['changed'] / local['copy']:.2f}" in row if local["copy"] else "–" in row
    assert local["changed"] != probe["local"]["0.9"]["changed"]
    wrong = CliRunner().invoke(app, ["curve", "--run", str(tmp_path / "run"), "--sigma", "0.3"])
    assert wrong.exit_code != 0 and "0.9, 0.5, 0.05" in wrong.output


def test_warm_start_copies_matching_tensors_and_reports_new_ones(tmp_path):
    source = build_pipeline("tiny-glyph", seed=1)
    source.save_pretrained(tmp_path / "model")
    target = build_pipeline("tiny", seed=2)  # 64 latent channels per token instead of 16: x_embedder differs
    modules = {n: getattr(target, n) for n in ("transformer", "text_encoder", "text_encoder_2")}
    skipped = warm_start(modules, tmp_path / "model")
    assert "transformer.x_embedder.weight" in skipped and "transformer.proj_out.weight" in skipped
    # T5's embed_tokens is its `shared` tensor, saved once: loaded, so not reported as new
    assert not [name for name in skipped if name.startswith("text_encoder")]
    block = "transformer_blocks.0.attn.to_q.weight"
    assert torch.equal(target.transformer.state_dict()[block], source.transformer.state_dict()[block])


def test_cooldown_branch_decays_to_the_end_and_leaves_the_run_alone(tmp_path):
    cfg = preset("tiny-glyph", **{"flow.steps": 100})
    train_flow(cfg, tmp_path / "run", max_steps=4)
    cooled = branch_for_cooldown(tmp_path / "run", tmp_path / "cool", steps=3)
    assert (cooled.flow.decay_from, cooled.flow.steps) == (4, 7)
    assert lr_factor(7, cooled.flow) == 0.0 and lr_factor(4, cooled.flow) == 1.0
    records = train_flow(cooled, tmp_path / "cool")
    assert [r["step"] for r in records if r["stage"] == "flow-base"] == [5, 6, 7]
    assert read_config(tmp_path / "run").flow.steps == 100


def test_export_serves_glyphs_and_prompt_sized_text(tmp_path):
    from openkontext.engine.loading import load_engine
    from openkontext.toyworld import generate

    cfg = preset("tiny-glyph", **{"flow.steps": 2})
    train_flow(cfg, tmp_path / "run")
    folder = export(tmp_path / "run", tmp_path / "model", name="tiny-glyph-test", preserve=0.1, guidance="cfg")
    card = json.loads((folder / "openkontext.json").read_text())
    assert card["glyph_context"] and card["prompt_sized_text"] and card["preserve"] == 0.1
    assert card["guidance"] == "cfg" and "glyph_guidance" not in card  # a "line" strip is not guided
    assert json.loads((folder / "model_index.json").read_text())["vae"][1] == "TinyAutoencoder"
    # a fresh process, as the CLI and the server load it: diffusers imports no module a folder names by itself
    loaded = subprocess.run([sys.executable, "-c", "import sys; from openkontext.engine.loading import load_engine; "
                             "print(type(load_engine(sys.argv[1], device='cpu').pipeline.vae).__name__)", str(folder)],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert loaded.returncode == 0 and loaded.stdout.strip().endswith("TinyAutoencoder"), loaded.stderr[-2000:]
    engine = load_engine(str(folder), device="cpu")
    assert type(engine.pipeline.vae).__name__ == "TinyAutoencoder"
    assert (engine.info.preserve, engine.info.guidance_mode) == (0.1, "cfg")

    seen = {}

    def record(module, args, kwargs):
        seen["image_ids"] = kwargs["img_ids"]
        seen["text_tokens"] = kwargs["encoder_hidden_states"].shape[1]

    hook = engine.pipeline.transformer.register_forward_pre_hook(record, with_kwargs=True)
    try:
        sample = generate(5, split="heldout", size=64, categories=["text"])
        engine.edit([sample.input_image], "Change 'AB' to 'CD'", seed=0, steps=1, guidance=3.0)
    finally:
        hook.remove()
    indices = seen["image_ids"][:, 0].tolist()
    # target (index 0): 4x4 tokens; context (1): 4x4; glyph strip (GLYPH_INDEX): 4 wide x 1 high
    assert indices.count(0) == 16 and indices.count(1) == 16 and indices.count(GLYPH_INDEX) == 4
    assert seen["text_tokens"] == 24  # 20 bytes + end token, rounded up to 8


def test_sigterm_stops_a_background_run_after_the_step_with_a_checkpoint(tmp_path):
    import signal
    import time

    run = tmp_path / "run"
    command = [sys.executable, "-m", "openkontext.training.cli", "transformer", "--run", str(run), "--preset",
               "tiny-glyph", "--steps", "100000"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not ((run / "log.jsonl").exists() and
                                                   (run / "log.jsonl").read_text().count("flow-base") >= 3):
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err[-2000:]
    saved = torch.load(run / "flow.pt", weights_only=False)["step"]
    logged = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert 3 <= saved == max(logged) < 100000


def test_a_context_residual_run_starts_as_a_copier_and_exports_its_prediction(tmp_path):
    from openkontext.engine.loading import load_engine

    cfg = preset("tiny-glyph", model="tiny-residual", **{"flow.steps": 2, "flow.zero_output": True,
                                                         "flow.sigma_floor": 0.25, "flow.lr": 0.0,
                                                         "flow.text_lr": 0.0, "flow.warmup": 1})  # fmt: skip
    records = train_flow(cfg, tmp_path / "run")
    losses = [r["loss"] for r in records if r["stage"] == "flow-base"]
    assert len(losses) == 2 and all(0 < loss < 100 for loss in losses)  # sigma near 0 does not blow the loss up
    folder = export(tmp_path / "run", tmp_path / "model", name="tiny-residual-test")
    assert json.loads((folder / "openkontext.json").read_text())["prediction"] == "context_residual"
    engine = load_engine(str(folder), device="cpu")
    assert engine.info.prediction == "context_residual"
    assert not engine.pipeline.transformer.proj_out.weight.any()  # a learning rate of 0 kept the zeroed output


def test_a_word_token_model_trains_exports_and_serves_with_its_own_tokenizer(tmp_path):
    from openkontext.engine.loading import load_engine

    cfg = preset("tiny-glyph", model="tiny-words", **{"flow.steps": 2, "flow.sigma_floor": 0.25, "flow.warmup": 1,
                                                      "flow.prompt_word_drop": 0.1, "flow.prompt_word_insert": 0.2})
    train_flow(cfg, tmp_path / "run")
    folder = export(tmp_path / "run", tmp_path / "model", name="tiny-words-test")
    engine = load_engine(str(folder), device="cpu")
    tokenizer = engine.pipeline.tokenizer_2
    assert tokenizer.convert_ids_to_tokens(tokenizer("Make the balloon red.").input_ids) == [
        "make", "the", "balloon", "red", ".", "</s>"]
    assert engine.pipeline.text_encoder_2.config.vocab_size == len(tokenizer) == len(engine.pipeline.tokenizer)
    assert engine.info.text_length("Make the balloon red.", tokenizer) == 8  # six word tokens, not 22 bytes
    image = Image.new("RGB", (64, 64), (200, 60, 60))
    assert engine.edit([image], "Make the balloon 'RED'.", seed=1, steps=2, guidance=3.0).size == (64, 64)

    # the next run starts from this folder; its model card names the model it came from, even once the folder
    # holds another model (as the package's default folder does when a new model is shipped)
    assert "50% of near-deterministic edits at sigma in [0.85, 1])" in (folder / "README.md").read_text()
    assert "(rectified flow, AdamW, prompt dropout" in (folder / "README.md").read_text()
    next_flow = dataclasses.replace(cfg.flow, steps=1, init_from=str(folder), low_noise_share=0.2, optimizer="muon")
    train_flow(dataclasses.replace(cfg, flow=next_flow), tmp_path / "next")
    export(tmp_path / "next", folder, name="next")
    card = (folder / "README.md").read_text()
    assert "warm-started from the tensors of tiny-words-test where shapes fit" in card
    assert "50% of near-deterministic edits at sigma in [0.85, 1]; 20% of all samples at sigma in [0, 0.25]" in card
    assert "(rectified flow, Muon on the transformer blocks' matrices, AdamW on the rest, prompt dropout" in card


def test_prompt_augmentation_drops_and_inserts_words_but_never_touches_quotes():
    from openkontext.training.data import augment_prompt

    prompt = "Change 'KELLAR SIGN' to \u2018SUMITH\u2019 on the red banner."
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert augment_prompt(prompt, gen(), 0.0, 0.0) == prompt
    assert augment_prompt(prompt, gen(), 1.0, 0.0) == "'KELLAR SIGN' \u2018SUMITH\u2019"  # only the quotes remain
    inserted = augment_prompt(prompt, gen(), 0.0, 1.0)
    assert "'KELLAR SIGN'" in inserted and "\u2018SUMITH\u2019" in inserted
    words = inserted.replace("'KELLAR SIGN'", "").replace("\u2018SUMITH\u2019", "").split()
    assert words[1::2] == ["Change", "to", "on", "the", "red", "banner."]  # each word kept, a made-up one before it
    assert all(w.isalpha() and w.islower() and 3 <= len(w) <= 8 for w in words[0::2])
    some = [augment_prompt(prompt, gen(), 0.3, 0.3) for _ in range(2)]
    assert some[0] == some[1] != prompt  # a pure function of the generator's state
    assert all("'KELLAR SIGN'" in s and "\u2018SUMITH\u2019" in s for s in some)


def test_a_deeper_transformer_warm_starts_as_the_trained_one_and_still_learns(tmp_path):
    source = build_pipeline("tiny-glyph", seed=1)
    source.save_pretrained(tmp_path / "model")
    shallow = CONFIGS["tiny-glyph"]
    deeper = dataclasses.replace(shallow, transformer={**shallow.transformer, "num_layers": 2, "num_single_layers": 3})
    target = build_pipeline(deeper, seed=2)
    assert warm_start({"transformer": target.transformer}, tmp_path / "model") == []
    state = target.transformer.state_dict()
    # the copy after each trained block has its gates closed and everything else of the trained block
    gate_rows = slice(2 * 32, 3 * 32)  # the single block's modulation: shift, scale, gate (32 wide each)
    assert torch.count_nonzero(state["single_transformer_blocks.2.norm.linear.weight"][gate_rows]) == 0
    assert torch.equal(state["single_transformer_blocks.2.norm.linear.weight"][:64],
                       state["single_transformer_blocks.0.norm.linear.weight"][:64])
    assert torch.count_nonzero(state["single_transformer_blocks.0.norm.linear.weight"][gate_rows]) > 0
    assert torch.equal(state["transformer_blocks.1.attn.to_q.weight"],
                       source.transformer.state_dict()["transformer_blocks.0.attn.to_q.weight"])

    inputs = tiny_transformer_inputs(timesteps=[0.6], guidances=[3.0])
    with torch.no_grad():
        assert torch.allclose(target.transformer(**inputs)[0], source.transformer(**inputs)[0], atol=1e-6)
    # a closed gate still gets a gradient: training can open it
    target.transformer.requires_grad_(True)
    target.transformer(**inputs)[0].square().mean().backward()
    grad = target.transformer.single_transformer_blocks[2].norm.linear.weight.grad[gate_rows]
    assert torch.count_nonzero(grad) > 0


def test_a_wider_transformer_warm_starts_as_the_trained_one_and_its_twins_grow_apart(tmp_path):
    source = build_pipeline("tiny-glyph", seed=1)
    source.save_pretrained(tmp_path / "model")
    narrow = CONFIGS["tiny-glyph"]  # 2 heads of 16: width 32
    wide_config = dataclasses.replace(narrow, transformer={**narrow.transformer, "num_attention_heads": 4,
                                                           "num_layers": 2})  # twice as wide and as deep at once
    wide = build_pipeline(wide_config, seed=2).transformer
    assert warm_start({"transformer": wide}, tmp_path / "model") == []
    state, trained = wide.state_dict(), source.transformer.state_dict()
    # heads 2 and 3 are twins of heads 0 and 1: each reads the repeated stream through columns that add up to the
    # trained weight; the split carries noise, so the twins can grow apart
    q = state["single_transformer_blocks.0.attn.to_q.weight"]
    trained_q = trained["single_transformer_blocks.0.attn.to_q.weight"]
    assert q.shape == (64, 64)
    for head_rows in (q[:32], q[32:]):
        assert torch.allclose(head_rows[:, :32] + head_rows[:, 32:], trained_q, atol=1e-6)
    assert not torch.allclose(q[:32, :32], q[:32, 32:])
    # the image embedder reads latents, not the stream: its rows are repeated and nothing is split
    assert torch.equal(state["x_embedder.weight"][:32], state["x_embedder.weight"][32:])

    inputs = tiny_transformer_inputs(timesteps=[0.6, 0.2], guidances=[3.0, 1.0])
    with torch.no_grad():
        expected = source.transformer(**inputs)[0]
        assert torch.allclose(wide(**inputs)[0], expected, atol=1e-5)
    wide.requires_grad_(True)
    wide(**inputs)[0].square().mean().backward()
    grad = wide.single_transformer_blocks[0].attn.to_q.weight.grad
    assert not torch.allclose(grad[:32], grad[32:])  # a head and its twin learn different things


def test_twin_spread_is_zero_for_exact_twins_and_grows_as_twins_learn_apart():
    narrow = CONFIGS["tiny-glyph"].transformer  # 2 heads of 16: width 32
    wide = {**narrow, "num_attention_heads": 4}
    trained = build_pipeline("tiny-glyph", seed=1).transformer.state_dict()
    assert twin_spread(widen(trained, narrow, wide, noise=0.0), 32, 2) == 0.0
    grown = widen(trained, narrow, wide)  # the default noise: twins a little apart, so they can learn apart
    start = twin_spread(grown, 32, 2)
    assert 0.0 < start < 0.2
    key = "single_transformer_blocks.0.attn.to_q.weight"
    learned = dict(grown, **{key: grown[key].clone()})
    learned[key][:32] += torch.randn(32, 64, generator=torch.Generator().manual_seed(0))  # one twin moves alone
    assert twin_spread(learned, 32, 2) > start
    # an update both twins share has no spread
    shared = {k: torch.ones_like(v) for k, v in grown.items()}
    assert twin_spread(shared, 32, 2) == 0.0
    with pytest.raises(ValueError, match="no matrix of the state has whole groups of 2 twins of width 28"):
        twin_spread(grown, 28, 2)


def test_widening_refuses_a_width_that_is_not_a_multiple(tmp_path):
    build_pipeline("tiny-glyph", seed=1).save_pretrained(tmp_path / "model")
    narrow = CONFIGS["tiny-glyph"]
    odd = build_pipeline(dataclasses.replace(narrow, transformer={**narrow.transformer, "num_attention_heads": 3}),
                         seed=2)
    with pytest.raises(ValueError, match="cannot widen 2 heads of 16 to 3 heads of 16"):
        warm_start({"transformer": odd.transformer}, tmp_path / "model")


def test_deepening_refuses_a_depth_that_is_not_a_multiple(tmp_path):
    build_pipeline("tiny-glyph", seed=1).save_pretrained(tmp_path / "model")
    shallow = CONFIGS["tiny-glyph"]
    odd = build_pipeline(dataclasses.replace(shallow, transformer={**shallow.transformer, "num_layers": 0}), seed=2)
    with pytest.raises(ValueError, match="num_layers from 1 to 0"):
        warm_start({"transformer": odd.transformer}, tmp_path / "model")

"""Seconds per complete Kontext edit: the plain diffusers pipeline vs OpenKontext's acceleration options, one run.

    python benchmarks/gpu_kontext.py                                   # FLUX.1 Kontext [dev] shape, random weights
    python benchmarks/gpu_kontext.py --model /models/FLUX.1-Kontext-dev  # real weights (diffusers folder)
    python benchmarks/gpu_kontext.py --config tiny --device cpu --steps 3 --repeats 2   # the test suite's mode

Without --model, the full FLUX.1 Kontext [dev] architecture is built from its published configuration with RANDOM
weights (12 B transformer, CLIP-L and T5-XXL text encoders at their real sizes, the 16-channel VAE): the timings are
real, the images are noise. Each run (a named configuration: 'baseline' is the plain FluxKontextPipeline in bf16 with
no options) builds a fresh pipeline with the same weights, and at each size edits one context image into a result of
that size: prompt encoding, VAE encode, N transformer steps, VAE decode. After --warmup edits (compilation happens
there), --repeats timed edits with distinct prompts (so the prompt cache never hits) give the median seconds per
edit, the ratio to the baseline, the effective TFLOP/s of the transformer and the peak GPU memory. The first warm-up
edit uses one fixed prompt and seed in every run; its output is compared with the baseline's (PSNR, mean |Δ|) to
show what lossy options (fp8, step caching) change.

TFLOP per edit counts the transformer's matrix multiplies only (see ``transformer_flops``), times the steps; the text
encoders and the VAE are excluded (a few % of the total at 1024²). With step caching some of those FLOPs are skipped,
so its "TFLOP/s" is effective, not achieved.

Weight formats (measured at the first size, the native one by default): 'int8' and 'fp8-wo' quantize the
transformer's block weights at load time with torchao (weight-only); 'gguf-q8_0' writes the transformer as a Q8_0
GGUF file (engine/gguf.py) and loads it back as ``--transformer-file`` does. The baseline is the bf16 format. The
'weights GiB' column is the transformer's size in memory after loading, on any device; 'peak GiB' needs CUDA.

--profile RUN breaks one edit of RUN down into phases (text encoding, VAE encode, denoising, VAE decode) and lists
the kernels that take the time (torch.profiler), grouped as GEMM / attention / other.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from openkontext.quiet import quiet_libraries

quiet_libraries()  # before the imports below load diffusers and transformers (import-time warnings)

from openkontext.engine.acceleration.apply import OFFLOAD_HEADROOM_BYTES, apply, module_bytes, pipeline_modules
from openkontext.engine.acceleration.devices import DeviceInfo, options_for, validate
from openkontext.engine.acceleration.options import AccelerationError, AccelerationOptions, default_dtype
from openkontext.engine.buckets import nearest_bucket
from openkontext.engine.configs import CONFIGS, build_pipeline
from openkontext.engine.gguf import save_gguf
from openkontext.engine.kontext import KontextEngine, MultiReferenceKontextPipeline
from openkontext.engine.loading import load_single_file_transformer
from openkontext.engine.model_info import ModelInfo, config_info, folder_info
from openkontext.sizes import parse_sizes

PROMPT = "Change the sky to a deep purple sunset and add a small red kite"
SEED = 0
GUIDANCE = 2.5

# Dense (no sparsity) peak tensor throughput in TFLOP/s, from NVIDIA's data sheets: (bf16, fp8).
PEAK_TFLOPS = {
    "H200": (989.4, 1978.9),
    "H100 NVL": (835.0, 1671.0),
    "H100 PCIe": (756.0, 1513.0),
    "H100": (989.4, 1978.9),  # SXM ("H100 80GB HBM3")
    "A100": (312.0, None),
}

FLOP_FORMULA = (
    "per transformer forward, d = heads*head_dim, N = (1+R)*(H/16)*(W/16) target+context tokens (R context images), "
    "T = text tokens (max_sequence_length), L = N+T: "
    "double block = 2*L*12*d^2 (q,k,v,out: 4d^2; MLP 4d->d: 8d^2) + 4*L^2*d (QK^T and AV); "
    "single block = 2*L*12*d^2 (q,k,v + MLP in: 7d^2; out over 5d: 5d^2) + 4*L^2*d; "
    "plus 2*N*C_in*d (x_embedder) + 2*T*D_text*d (context_embedder) + 2*N*d*C_in (proj_out) + per-sample "
    "modulation; per edit = steps * that. FLUX.1 Kontext [dev] at 1024^2 with one context image: L = 8704, "
    "165.4 TFLOP per step."
)


def transformer_flops(config: dict, width: int, height: int, text_tokens: int, references: int = 1,
                      vae_scale: int = 8) -> float:  # fmt: skip
    """Matrix-multiply FLOPs of one FluxTransformer2DModel forward for a width x height edit (see FLOP_FORMULA)."""
    d = config["num_attention_heads"] * config["attention_head_dim"]
    patch = vae_scale * 2 * config.get("patch_size", 1)
    n = (1 + references) * (width // patch) * (height // patch)
    t = text_tokens
    length = n + t
    mlp = 4  # FluxTransformerBlock / FluxSingleTransformerBlock use mlp_ratio 4
    c_in = config["in_channels"]
    double = 2 * length * (4 + 2 * mlp) * d * d + 4 * length * length * d
    single = 2 * length * (3 + mlp + (1 + mlp)) * d * d + 4 * length * length * d
    embed = 2 * n * c_in * d + 2 * t * config["joint_attention_dim"] * d + 2 * n * d * c_in
    time_text = 2 * (256 * d + d * d) * (2 if config.get("guidance_embeds") else 1)
    time_text += 2 * (config["pooled_projection_dim"] * d + d * d)
    modulation = 2 * d * (12 * d * config["num_layers"] + 3 * d * config["num_single_layers"] + 2 * d)
    return config["num_layers"] * double + config["num_single_layers"] * single + embed + time_text + modulation


# --- runs ---------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    options: AccelerationOptions | None  # None: the plain pipeline (baseline)
    about: str
    memory_only: bool = False  # measured at the first size only: they exist to fit small GPUs, not to be fast
    gguf: str | None = None  # the transformer written as a GGUF file of this quantization type and loaded back


def catalog(device: DeviceInfo) -> dict[str, Run]:
    auto = options_for(device, "auto")
    fast = options_for(device, "fast")
    none = AccelerationOptions()
    runs = [
        Run("baseline", None, "plain FluxKontextPipeline, no options (bf16 on CUDA, fp32 on CPU)"),
        Run("auto", auto, "the 'auto' preset: " + auto.describe()),
        Run("fuse", none.replace(fuse_qkv=True, dtype=auto.dtype), "fused q/k/v only"),
        Run("compile", auto.replace(fuse_qkv=False, attention_backend="native"), "auto without fusion and attention"),
        Run("auto+fp8", auto.replace(fp8="weights+activations"), "auto + fp8 weights and activations (lossy)"),
        Run("fast", fast, "the 'fast' preset (lossy): " + fast.describe()),
        Run("fast+fbc", fast.replace(cuda_graphs=False, step_cache="first-block"), "fast + First-Block-Cache (lossy)"),
        Run("auto+fbc", auto.replace(step_cache="first-block"), "auto + First-Block-Cache 0.05 (lossy)"),
        Run("auto+taylorseer", auto.replace(step_cache="taylorseer"), "auto + TaylorSeer, interval 5 (lossy)"),
        Run("fp8-weights", none.replace(fp8="weights", dtype=auto.dtype), "fp8 weight storage only (memory)", True),
        Run("offload-model", none.replace(offload="model", dtype=auto.dtype), "model CPU offload (memory)", True),
        Run("offload-model+fp8-weights", none.replace(offload="model", fp8="weights", dtype=auto.dtype),
            "model CPU offload + fp8 weight storage (memory)", True),
        Run("offload-sequential", none.replace(offload="sequential", dtype=auto.dtype),
            "sequential CPU offload (memory; slowest)", True),
        Run("int8", none.replace(quantize="int8", dtype=auto.dtype), "int8 weight-only transformer (torchao)", True),
        Run("int8+compile", auto.replace(quantize="int8", fuse_qkv=False),
            "int8 weight-only, compiled (auto without fusion)", True),
        Run("fp8-wo", none.replace(quantize="fp8", dtype=auto.dtype), "fp8 weight-only transformer (torchao)", True),
        Run("gguf-q8_0", none.replace(dtype=auto.dtype), "GGUF Q8_0 transformer file (diffusers' GGUF support)", True,
            gguf="Q8_0"),
    ]  # fmt: skip
    return {run.name: run for run in runs}


DEFAULT_RUNS = {
    "cuda": "baseline,auto,auto+fp8,fast,fast+fbc,auto+taylorseer,fp8-weights,offload-model,"
    "offload-model+fp8-weights,offload-sequential,int8,int8+compile,fp8-wo,gguf-q8_0",
    "cpu": "baseline,auto,fuse,auto+fbc,auto+taylorseer,fp8-weights,fast,offload-model,int8,fp8-wo,gguf-q8_0",
}


# --- building -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def tensors_created_in(dtype: torch.dtype):
    """Inside, torch creates new tensors (the random weights) in ``dtype``."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build(args, dtype: torch.dtype, where: torch.device):
    """A fresh pipeline with this benchmark's weights, in ``dtype`` on ``where``."""
    if args.model:
        from diffusers import FluxKontextPipeline

        import openkontext.engine.tiny_autoencoder  # noqa: F401  (diffusers finds the default model's VAE class by module)

        pipeline = FluxKontextPipeline.from_pretrained(args.model, torch_dtype=dtype, local_files_only=True)
        return pipeline.to(where)
    # Random weights: created directly in the target dtype on the target device (the same seed gives the same
    # weights in every run), which keeps building FLUX-sized models quick and within memory.
    with tensors_created_in(dtype), where:
        return build_pipeline(CONFIGS[args.config], seed=SEED, dtype=dtype)


def with_gguf_transformer(pipeline, quant: str, dtype: torch.dtype, where: torch.device):
    """The pipeline with its transformer written as a ``quant`` GGUF file and loaded back from it, on ``where``."""
    transformer = pipeline.transformer
    with tempfile.TemporaryDirectory() as folder:
        transformer.save_config(Path(folder) / "transformer")
        file = save_gguf(transformer.state_dict(), Path(folder) / f"transformer-{quant}.gguf", quant)
        pipeline.transformer = None
        del transformer
        gc.collect()
        if where.type == "cuda":
            torch.cuda.empty_cache()
        pipeline.transformer = load_single_file_transformer(file, Path(folder), dtype).to(where)
    return pipeline


def fits_on(info: DeviceInfo, args, dtype: torch.dtype) -> bool:
    """Whether the whole model fits the GPU with room to run (offload='auto's rule), counted on the meta device."""
    if info.type != "cuda" or info.total_memory is None:
        return True
    if args.model:
        weights = sum(f.stat().st_size for f in Path(args.model).rglob("*.safetensors"))
    else:
        with tensors_created_in(dtype), torch.device("meta"):
            pipeline = build_pipeline(CONFIGS[args.config], seed=SEED, dtype=dtype)
        weights = sum(module_bytes(m) for m in pipeline_modules(pipeline).values())
    return weights + OFFLOAD_HEADROOM_BYTES <= info.total_memory


def model_info(args, pipeline) -> ModelInfo:
    """The model's buckets and text length, as load_engine reads them; the engine's glyph strip, prompt-sized text,
    paste-back and true CFG stay off, so that every run computes what the plain pipeline (the baseline) computes."""
    if args.model:
        info = folder_info(Path(args.model), pipeline)
    else:
        info = config_info(CONFIGS[args.config], name=args.config, description=f"benchmark model {args.config}",
                           placeholder=True)  # fmt: skip
    return dataclasses.replace(info, glyph_context="", prompt_sized_text=False, preserve=0.0,
                               guidance_mode="embedded")  # fmt: skip


def default_sizes(info: ModelInfo) -> list[tuple[int, int]]:
    native = nearest_bucket(1, 1, info.buckets)
    half = (native[0] // 2 // 16 * 16, native[1] // 2 // 16 * 16)
    wide = nearest_bucket(4, 3, info.buckets)
    return list(dict.fromkeys([native, half, wide]))


def context_image(width: int, height: int) -> Image.Image:
    """A smooth, deterministic picture (VAE-encodable content rather than flat colour)."""
    rng = np.random.default_rng(7)
    small = rng.integers(0, 256, (max(2, height // 32), max(2, width // 32), 3), dtype=np.uint8)
    return Image.fromarray(small, "RGB").resize((width, height), Image.Resampling.BICUBIC)


# --- measuring ----------------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class EditRunner:
    """Runs one complete edit per call, through the plain pipeline (baseline) or the OpenKontext engine."""

    def __init__(self, pipeline, info: ModelInfo, options: AccelerationOptions | None, device: torch.device):
        self.pipeline, self.info, self.device = pipeline, info, device
        self.engine = None if options is None else KontextEngine(pipeline, info, acceleration=options)
        pipeline.set_progress_bar_config(disable=True)

    def __call__(self, image: Image.Image, prompt: str, size: tuple[int, int], steps: int, on_step=None):
        if self.engine is not None:
            return self.engine.edit([image], prompt, seed=SEED, steps=steps, guidance=GUIDANCE, size=size,
                                    on_step=on_step)  # fmt: skip
        width, height = size
        callback = None
        if on_step is not None:

            def callback(pipeline, index, timestep, tensors):
                on_step(index + 1, steps, tensors["latents"])
                return {}

        return self.pipeline(
            image=image, prompt=prompt, height=height, width=width, max_area=width * height, _auto_resize=False,
            num_inference_steps=steps, guidance_scale=GUIDANCE, generator=torch.Generator("cpu").manual_seed(SEED),
            max_sequence_length=self.info.max_sequence_length, callback_on_step_end=callback, output_type="pil",
        ).images[0]  # fmt: skip


def compare(image: Image.Image, reference: Image.Image) -> dict:
    a = np.asarray(image, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    psnr = math.inf if mse == 0 else 10 * math.log10(255**2 / mse)
    return {"psnr_db": psnr, "mean_abs_diff": float(np.mean(abs(a - b)))}


@dataclass
class Result:
    run: str
    size: tuple[int, int]
    seconds: list[float] = field(default_factory=list)
    warmup_seconds: list[float] = field(default_factory=list)
    peak_gib: float | None = None
    weights_gib: float | None = None  # the transformer in memory, as loaded (quantized formats: their storage)
    tflop_per_edit: float = 0.0
    skipped: str | None = None
    quality: dict | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None


def measure(runner: EditRunner, run: str, size, args, device, flops_per_step: float, outputs: dict) -> Result:
    image = context_image(*size)
    result = Result(run, size, tflop_per_edit=flops_per_step * args.steps / 1e12,
                    weights_gib=module_bytes(runner.pipeline.transformer) / 2**30)  # fmt: skip
    for index in range(max(1, args.warmup)):
        started = time.perf_counter()
        output = runner(image, PROMPT if index == 0 else f"{PROMPT} (warm-up {index})", size, args.steps)
        sync(device)
        result.warmup_seconds.append(time.perf_counter() - started)
        if index == 0:
            outputs[(run, size)] = output
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for index in range(args.repeats):
        started = time.perf_counter()
        runner(image, f"{PROMPT}, take {index + 1}", size, args.steps)  # distinct prompts: no prompt-cache hits
        sync(device)
        result.seconds.append(time.perf_counter() - started)
    if device.type == "cuda":
        result.peak_gib = torch.cuda.max_memory_allocated(device) / 2**30
    return result


# --- profile ------------------------------------------------------------------------------------------------------


def _category(name: str) -> str:
    lowered = name.lower()
    if any(k in lowered for k in ("flash", "fmha", "attention", "sdpa", "cudnn_generated", "sm90_fmha")):
        return "attention"
    if any(k in lowered for k in ("gemm", "matmul", "addmm", "aten::mm", "cutlass", "xmma", "nvjet", "cublas",
                                  "aten::linear", "f8f8", "scaled_mm", "aten::bmm")):  # fmt: skip
        return "gemm"
    if "conv" in lowered:
        return "convolution"
    return "other"


def profile(runner: EditRunner, size, args, device) -> dict:
    """Phases of one edit (synchronised wall-clock) and the kernels that take the time (torch.profiler)."""
    image = context_image(*size)
    marks: dict[str, float] = {}
    step_times: list[float] = []
    vae = runner.pipeline.vae
    original_encode, original_decode = vae.encode, vae.decode
    pipeline_class = MultiReferenceKontextPipeline if runner.engine else type(runner.pipeline)
    original_prompt = pipeline_class.encode_prompt
    own_prompt_method = "encode_prompt" in pipeline_class.__dict__

    def timed(name, fn):
        def wrapper(*a, **k):
            sync(device)
            started = time.perf_counter()
            out = fn(*a, **k)
            sync(device)
            marks[name] = marks.get(name, 0.0) + time.perf_counter() - started
            marks[name + "_end"] = time.perf_counter()
            return out

        return wrapper

    def on_step(step, total, _):
        sync(device)
        step_times.append(time.perf_counter())

    vae.encode, vae.decode = timed("vae_encode", original_encode), timed("vae_decode", original_decode)
    pipeline_class.encode_prompt = timed("text_encoders", original_prompt)
    try:
        sync(device)
        started = time.perf_counter()
        runner(image, f"{PROMPT} (profiled)", size, args.steps, on_step=on_step)
        sync(device)
        total = time.perf_counter() - started
    finally:
        del vae.encode, vae.decode  # back to the class's methods
        if own_prompt_method:
            pipeline_class.encode_prompt = original_prompt
        else:
            del pipeline_class.encode_prompt
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        runner(image, f"{PROMPT} (profiled again)", size, args.steps)
        sync(device)
    denoise_start = marks.get("vae_encode_end", started)
    denoise = (step_times[-1] - denoise_start) if step_times else 0.0
    phases = {
        "text_encoders": marks.get("text_encoders", 0.0),
        "vae_encode": marks.get("vae_encode", 0.0),
        "denoise": denoise,
        "vae_decode": marks.get("vae_decode", 0.0),
    }
    phases["other"] = max(0.0, total - sum(phases.values()))
    per_step = [b - a for a, b in zip([denoise_start, *step_times[:-1]], step_times)]

    cuda = device.type == "cuda"
    kernels = []
    for event in prof.key_averages():
        if cuda:
            if getattr(event, "device_type", None) != torch.autograd.DeviceType.CUDA:
                continue
            spent = getattr(event, "self_device_time_total", 0) or getattr(event, "self_cuda_time_total", 0)
        else:
            spent = event.self_cpu_time_total
        if spent > 0:
            kernels.append((event.key, spent / 1e6, event.count))
    kernels.sort(key=lambda k: -k[1])
    busy = sum(k[1] for k in kernels) or 1e-12
    categories: dict[str, float] = {}
    for name, seconds, _ in kernels:
        categories[_category(name)] = categories.get(_category(name), 0.0) + seconds
    return {
        "size": list(size),
        "total_s": total,
        "phases_s": phases,
        "step_s": {
            "median": statistics.median(per_step) if per_step else None,
            "first": per_step[0] if per_step else None,
        },  # fmt: skip
        "kernel_time": "GPU kernel time" if cuda else "CPU operator self time",
        "categories_share": {k: v / busy for k, v in sorted(categories.items(), key=lambda kv: -kv[1])},
        "top": [{"name": n[:120], "seconds": s, "calls": c, "share": s / busy} for n, s, c in kernels[:15]],
    }


# --- report -------------------------------------------------------------------------------------------------------


def peak_for(device_name: str, fp8: bool) -> float | None:
    for key, (bf16, f8) in PEAK_TFLOPS.items():
        if key in device_name:
            return f8 if fp8 else bf16
    return None


def fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def table(results: list[Result], baselines: dict) -> str:
    header = (f"{'configuration':<27} {'size':>9} {'s/edit':>8} {'ratio':>6} {'speedup':>7} {'TFLOP/s':>8} "
              f"{'weights GiB':>11} {'peak GiB':>8} {'PSNR dB':>8}  note")  # fmt: skip
    lines = [header, "-" * len(header)]
    for r in results:
        size = f"{r.size[0]}x{r.size[1]}"
        if r.skipped:
            dashes = " ".join(f"{'-':>{w}}" for w in (8, 6, 7, 8, 11, 8, 8))
            lines.append(f"{r.run:<27} {size:>9} {dashes}  skipped: {r.skipped}")
            continue
        base = baselines.get(tuple(r.size))
        ratio = r.median / base if base else None
        psnr = r.quality["psnr_db"] if r.quality else None
        psnr_text = "inf" if psnr == math.inf else fmt(psnr, ".1f")
        speedup = 1 / ratio if ratio else None
        lines.append(
            f"{r.run:<27} {size:>9} {r.median:>8.3f} {fmt(ratio, '.2f'):>6} {fmt(speedup, '.2f'):>7} "
            f"{r.tflop_per_edit / r.median:>8.3g} {fmt(r.weights_gib, '.3g'):>11} {fmt(r.peak_gib, '.1f', 'n/a'):>8} "
            f"{psnr_text:>8}"
        )  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config",
        default="flux-kontext-dev",
        choices=sorted(CONFIGS),
        help="architecture to build with random weights (default: FLUX.1 Kontext [dev]'s)",
    )
    parser.add_argument("--model", help="a diffusers-format FLUX.1 Kontext folder: real weights instead")
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cuda, cuda:1, cpu")
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=5, help="timed edits per run and size (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed edits first (compilation happens here)")
    parser.add_argument("--sizes", help="e.g. 1024x1024,512x512,1184x880 (default: native, half, one 4:3 bucket)")
    parser.add_argument("--runs", help="comma-separated run names (see --list); default depends on the device")
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        help="an extra run NAME=OPTIONS, e.g. 'mine=compile=default;fuse_qkv=on' (';' separates)",
    )
    parser.add_argument("--list", action="store_true", help="list the runs and exit")
    parser.add_argument("--profile", metavar="RUN", help="break one edit of RUN down (phases, top kernels)")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, for MFU (default: known GPUs)")
    parser.add_argument(
        "--dtype",
        choices=("bf16", "fp32"),
        help="dtype of every run (default: bf16 on CUDA, fp32 on CPU; each run's own otherwise)",
    )
    parser.add_argument("--json", type=Path, default=Path("gpu_kontext.json"), help="where to write the results")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)  # fmt: skip
    info = DeviceInfo.detect(device)
    device = info.torch_device
    runs = catalog(info)
    for spec in args.extra:
        name, _, options = spec.partition("=")
        runs[name] = Run(name, AccelerationOptions.parse(options.replace(";", ",")), f"--extra {options}")
    if args.list:
        for run in runs.values():
            print(f"{run.name:<27} {run.about}")
        return 0
    selected = (args.runs or DEFAULT_RUNS["cuda" if device.type == "cuda" else "cpu"]).split(",")
    selected += [spec.partition("=")[0] for spec in args.extra]
    unknown = [name for name in selected if name not in runs]
    if unknown:
        parser.error(f"unknown run(s) {unknown}; --list shows them")
    if "baseline" not in selected:
        selected.insert(0, "baseline")

    dtype = default_dtype(device)
    if args.dtype:
        dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
        for run in runs.values():
            if run.options is not None:
                run.options = run.options.replace(dtype=args.dtype)
    weights = (f"REAL weights from {args.model}" if args.model else
               f"RANDOM weights: the {args.config} architecture from its published configuration "
               "(timings are real; images are noise). Pass --model PATH for real weights.")  # fmt: skip
    print(f"gpu_kontext: {weights}", flush=True)
    print(f"device {info.name or info.type} | torch {torch.__version__} | steps {args.steps} | warm-up {args.warmup} | "
          f"repeats {args.repeats} | baseline dtype {str(dtype).removeprefix('torch.')}", flush=True)  # fmt: skip

    results: list[Result] = []
    outputs: dict = {}
    profiles: dict = {}
    sizes = None
    flops_config = None
    text_tokens = None
    for name in selected:
        run = runs[name]
        options = run.options
        skip = None
        if options is not None:
            try:
                validate(options, info)
            except AccelerationError as exc:
                skip = str(exc)
        if skip is None:
            # Offloaded runs start in CPU memory, as a small GPU would need; the others are built on the device.
            offloaded = options is not None and (
                options.offload in ("model", "sequential")
                or (options.offload == "auto" and not fits_on(info, args, dtype))
            )
            started = time.perf_counter()
            run_dtype = dtype if options is None else options.torch_dtype(device)
            where = torch.device("cpu") if offloaded else device
            pipeline = build(args, run_dtype, where)
            if run.gguf:
                pipeline = with_gguf_transformer(pipeline, run.gguf, run_dtype, where)
            model = model_info(args, pipeline)
            if sizes is None:
                sizes = sizes_of(args.sizes) if args.sizes else default_sizes(model)
                flops_config = dict(pipeline.transformer.config)
                text_tokens = model.max_sequence_length
            if options is not None:
                try:
                    pipeline = apply(pipeline, options, info)
                    options = pipeline.openkontext_acceleration
                except AccelerationError as exc:
                    skip = str(exc)
            print(f"[{name}] built in {time.perf_counter() - started:.1f} s: {run.about}", flush=True)
        run_sizes = (sizes or sizes_of(args.sizes or "64x64"))[: 1 if run.memory_only else None]
        if skip is not None:
            print(f"[{name}] skipped: {skip}", flush=True)
            results += [Result(name, size, skipped=skip) for size in run_sizes]
            continue
        runner = EditRunner(pipeline, model, options, device)
        for size in run_sizes:
            flops = transformer_flops(flops_config, *size, text_tokens, vae_scale=pipeline.vae_scale_factor)
            result = measure(runner, name, size, args, device, flops, outputs)
            results.append(result)
            print(f"[{name}] {size[0]}x{size[1]}: median {result.median:.3f} s/edit "
                  f"(warm-up {', '.join(f'{s:.1f}' for s in result.warmup_seconds)} s)", flush=True)  # fmt: skip
        if args.profile == name:
            profiles[name] = profile(runner, run_sizes[0], args, device)
        del runner, pipeline
        torch._dynamo.reset()  # compiled graphs (and their CUDA graph pools) of this run
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    baselines = {tuple(r.size): r.median for r in results if r.run == "baseline" and r.median}
    for r in results:
        reference = outputs.get(("baseline", r.size))
        mine = outputs.get((r.run, r.size))
        if reference is not None and mine is not None:
            r.quality = compare(mine, reference)

    print()
    print(table(results, baselines))
    print()
    print("ratio = s/edit / baseline's (lower is faster); speedup = its inverse; "
          "TFLOP/s = transformer FLOPs per edit / "
          "median s (effective with step caching); weights GiB = the transformer in memory as loaded; "
          "peak GiB = torch.cuda.max_memory_allocated over the timed edits; "
          "PSNR = first warm-up output (same prompt, seed and input in every run) vs the baseline's.")  # fmt: skip
    if sizes:
        for size in sizes:
            tflop = transformer_flops(flops_config, *size, text_tokens) / 1e12
            line = f"{size[0]}x{size[1]}: {tflop:.4g} TFLOP per transformer step, {tflop * args.steps:.4g} per edit"
            peak = args.peak_tflops or peak_for(info.name, fp8=False)
            if peak:
                fp8_peak = peak_for(info.name, fp8=True) or 2 * peak
                line += (f"; compute floor {tflop * args.steps / peak:.2f} s in bf16, "
                         f"{tflop * args.steps / fp8_peak:.2f} s in fp8")  # fmt: skip
            print(line)
    for name, prof in profiles.items():
        print(f"\nprofile of {name} at {prof['size'][0]}x{prof['size'][1]} ({prof['total_s']:.3f} s):")
        for phase, seconds in prof["phases_s"].items():
            print(f"  {phase:<14} {seconds:8.3f} s  {100 * seconds / prof['total_s']:5.1f} %")
        step = prof["step_s"]
        print(f"  per step: median {fmt(step['median'], '.4f')} s, first {fmt(step['first'], '.4f')} s")
        print(f"  {prof['kernel_time']} by category: " +
              ", ".join(f"{k} {100 * v:.1f} %" for k, v in prof["categories_share"].items()))  # fmt: skip
        for kernel in prof["top"][:10]:
            print(f"    {100 * kernel['share']:5.1f} %  {kernel['calls']:6d} calls  {kernel['name'][:90]}")

    report = {
        "benchmark": "gpu_kontext",
        "random_weights": not args.model,
        "weights": weights,
        "model": args.model or args.config,
        "device": {
            "type": info.type,
            "name": info.name,
            "capability": info.capability,
            "total_memory": info.total_memory,
        },  # fmt: skip
        "versions": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "diffusers": __import__("diffusers").__version__,
        },  # fmt: skip
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "baseline_dtype": str(dtype).removeprefix("torch."),
        "flop_formula": FLOP_FORMULA,
        "runs": {
            name: {"about": runs[name].about, "options": runs[name].options.describe() if runs[name].options else None}
            for name in selected
        },  # fmt: skip
        "results": [
            {
                "run": r.run,
                "size": list(r.size),
                "skipped": r.skipped,
                "median_s": r.median,
                "seconds": r.seconds,
                "warmup_s": r.warmup_seconds,
                "ratio_to_baseline": (r.median / baselines[tuple(r.size)])
                if r.median and baselines.get(tuple(r.size))
                else None,
                "tflop_per_edit": r.tflop_per_edit,
                "tflops": (r.tflop_per_edit / r.median) if r.median else None,
                "peak_gib": r.peak_gib,
                "weights_gib": r.weights_gib,
                "quality_vs_baseline": None
                if r.quality is None
                else {k: (None if v == math.inf else v) for k, v in r.quality.items()}
                | {"identical": r.quality["mean_abs_diff"] == 0},
            }
            for r in results
        ],  # fmt: skip
        "profiles": profiles,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.json}")
    return 0


def sizes_of(text: str) -> list[tuple[int, int]]:
    sizes = parse_sizes(text)
    for width, height in sizes:
        if width % 16 or height % 16:
            raise SystemExit(f"sizes must be multiples of 16: {width}x{height}")
    return sizes


if __name__ == "__main__":
    sys.exit(main())

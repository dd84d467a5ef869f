"""Acceleration: how a Kontext pipeline runs on the hardware it has, without changing what it computes (lossless
options) or, where asked, trading a little accuracy for speed or memory (lossy options). One module per step:

- ``options.py``: ``AccelerationOptions`` says what to do (parsed from settings, normalised, validated as values);
- ``devices.py``: what a device is (``DeviceInfo``), the options it gets (``options_for(device, preset)``,
  ``configure``) and the ones it cannot honour (``validate``);
- ``apply.py``: ``apply(pipeline, options, device)`` applies them with diffusers / torch / torchao facilities;
- ``runtime.py``: ``AccelerationRuntime``, the per-call part the engine uses (prompt-embedding cache, step-cache
  context, turn-taking for stateful options).

Warming up (compiling ahead of the first request) is part of starting an engine: ``engine/startup.py``.

What each option does, and its caveats, is in docs/gpu.md. In short:

============================  =========  ===================================================================
option                        lossless?  facility
============================  =========  ===================================================================
dtype bf16                    ~          the weights and activations in bfloat16 (FLUX.1's release dtype)
compile                       yes*       ``torch.compile`` of the transformer (Inductor); *numerically close
fuse_qkv                      yes*       diffusers ``fuse_qkv_projections``: one GEMM for q, k and v
attention_backend             yes*       diffusers ``set_attention_backend`` (FA3, cuDNN SDPA, ...)
cuda_graphs                   yes        Inductor CUDA graphs (compile mode reduce-overhead / max-autotune)
fp8 weights                   no         diffusers layerwise casting: fp8 storage, bf16 compute (memory only)
fp8 weights+activations       no         torchao dynamic float8 (per-row scales) for the blocks' Linear layers
step_cache                    no         diffusers First-Block-Cache or TaylorSeer hooks
offload                       yes        diffusers model / sequential CPU offload (accelerate)
vae_tiling                    ~          diffusers VAE tiling (tile seams are blended)
vae_channels_last             yes*       the VAE's weights in channels-last memory (oneDNN's fast CPU convolutions)
prompt_cache                  exact      LRU of text-encoder outputs per (prompt, max_sequence_length)
============================  =========  ===================================================================

Options that need a CUDA device are refused elsewhere with an ``AccelerationError`` that says why; options with a
meaningful CPU equivalent (compile, fuse_qkv, fp8 weights, step caching, VAE tiling, the prompt cache) run there too.
"""

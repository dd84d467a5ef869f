"""Writing a transformer's weights as a GGUF file: the format of the quantized FLUX.1 Kontext [dev] files people
publish (Q8_0, Q6_K, Q5_K, Q4_K …), which ``--transformer-file model.gguf`` loads (engine/loading.py).

For the tests (a tiny file that must load and match the float model) and the speed benchmark (the real shape with
random weights); anyone can also quantize their own full-precision transformer with it. As in the published files,
a 2-D weight is quantized when its rows split into whole quantization blocks; biases, norms and odd shapes stay
float32. The tensor names are whatever ``state_dict`` has: BFL's (as published) or diffusers'; both load.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

# The quantization types gguf-py can write (it reads, and diffusers dequantizes, many more: Q6_K, Q4_K …).
WRITABLE = ("Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1", "BF16", "F16")


def save_gguf(state_dict: Mapping[str, torch.Tensor], path: Path | str, quant: str = "Q8_0") -> Path:
    """Write ``state_dict`` to ``path`` with 2-D weights in ``quant`` (one of ``WRITABLE``); returns the path."""
    import gguf

    if quant not in WRITABLE:
        raise ValueError(f"quant must be one of {', '.join(WRITABLE)}, not {quant!r}")
    qtype = gguf.GGMLQuantizationType[quant]
    block_size, _ = gguf.GGML_QUANT_SIZES[qtype]
    path = Path(path)
    writer = gguf.GGUFWriter(str(path), arch="flux")
    for name, tensor in state_dict.items():
        array = tensor.detach().to("cpu", torch.float32).numpy()
        if array.ndim == 2 and array.shape[-1] % block_size == 0:
            writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path

"""Group-wise asymmetric int4 weights and their AutoAWQ "GEMM" packing.

Quantization (AutoAWQ's `pseudo_quantize_tensor`, zero point on): for each output row and each group of
`group_size` consecutive input columns, scale = (max - min) / 15 (stored as float16), zero =
clamp(-round(min / scale), 0, 15), q = clamp(round(w / scale) + zero, 0, 15); w ~ (q - zero) * scale.
One change: the range [min, max] is widened to include 0 (as GPTQ does), so the zero point never clamps and
every weight is within half a step; AutoAWQ clamps a group of one sign badly. Groups spanning 0 are unchanged.

Packing (AutoAWQ `WQLinear_GEMM`, read by transformers, vLLM and SGLang): tensors are laid out [in, out];
eight 4-bit values of eight consecutive output columns share one int32, value k of a block of eight at bits
4*i..4*i+3 where k = AWQ_ORDER[i] (an interleaved order, [0, 2, 4, 6, 1, 3, 5, 7]).

    qweight int32 [in, out/8]    qzeros int32 [in/group, out/8]    scales float16 [in/group, out]

Owns the arithmetic only; modules and checkpoint files live in `nvila.ops.quantized`.
"""

from __future__ import annotations

import torch

BITS = 4
MAX_INT = 2**BITS - 1  # 15
PACK = 32 // BITS  # values per int32
#: Position of value k of a block of eight: bits 4*i hold value AWQ_ORDER[i].
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
#: Inverse permutation (unpacking): value k sits at nibble AWQ_REVERSE_ORDER[k].
AWQ_REVERSE_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)


def quantize_groups(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[out, in] float weight -> (q [out, in] int32 in 0..15, zeros [out, in/g] int32, scales [out, in/g] fp16)."""
    out_features, in_features = weight.shape
    if in_features % group_size:
        raise ValueError(f"group size {group_size} does not divide in_features {in_features}")
    w = weight.detach().float().reshape(out_features, in_features // group_size, group_size)  # [o, n, g]
    w_max, w_min = w.amax(dim=-1).clamp(min=0), w.amin(dim=-1).clamp(max=0)  # [o, n], range holds 0
    scales = ((w_max - w_min).clamp(min=1e-5) / MAX_INT).half()
    s = scales.float()
    zeros = (-torch.round(w_min / s)).clamp(0, MAX_INT)
    q = (torch.round(w / s[..., None]) + zeros[..., None]).clamp(0, MAX_INT)  # [o, n, g]
    return q.reshape(out_features, in_features).int(), zeros.int(), scales


def dequantize_groups(q: torch.Tensor, zeros: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Inverse of `quantize_groups`: [out, in] float32 = (q - zero) * scale per group."""
    out_features, in_features = q.shape
    groups = zeros.shape[1]
    q = q.reshape(out_features, groups, in_features // groups).float()  # [o, n, g]
    w = (q - zeros.float()[..., None]) * scales.float()[..., None]
    return w.reshape(out_features, in_features)


def fake_quantize(weight: torch.Tensor, group_size: int) -> torch.Tensor:
    """Round-to-nearest int4 and back, in the weight's dtype (what the quantized layer will compute with)."""
    return dequantize_groups(*quantize_groups(weight, group_size)).to(weight.dtype)


def pack(values: torch.Tensor) -> torch.Tensor:
    """[rows, cols] ints in 0..15 -> [rows, cols/8] int32 in AutoAWQ's interleaved nibble order."""
    rows, cols = values.shape
    if cols % PACK:
        raise ValueError(f"cannot pack {cols} columns into int32 words of {PACK}")
    blocks = values.to(torch.int64).reshape(rows, cols // PACK, PACK)[..., list(AWQ_ORDER)]  # nibble i <- AWQ_ORDER[i]
    shifts = torch.arange(0, 32, BITS, dtype=torch.int64, device=values.device)
    words = (blocks << shifts).sum(dim=-1)  # [rows, cols/8], in 0..2^32-1
    return (words - (words >= 2**31).long() * 2**32).to(torch.int32)  # two's complement into int32


def unpack(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of `pack`: [rows, cols/8] int32 -> [rows, cols] int32 in 0..15."""
    # value k of a block sits at nibble AWQ_REVERSE_ORDER[k]: shifting by those amounts reads them in order
    shifts = torch.tensor(AWQ_REVERSE_ORDER, dtype=torch.int32, device=packed.device) * BITS
    return ((packed[..., None] >> shifts) & MAX_INT).reshape(packed.shape[0], -1)  # [rows, cols/8, 8] -> [rows, cols]


def pack_linear(weight: torch.Tensor, group_size: int) -> dict[str, torch.Tensor]:
    """An nn.Linear weight [out, in] -> {"qweight", "qzeros", "scales"} in the AutoAWQ GEMM layout."""
    q, zeros, scales = quantize_groups(weight, group_size)
    return {
        "qweight": pack(q.T.contiguous()),  # [in, out/8]
        "qzeros": pack(zeros.T.contiguous()),  # [in/g, out/8]
        "scales": scales.T.contiguous(),  # [in/g, out]
    }


def unpack_linear(qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """AutoAWQ GEMM tensors -> the float32 nn.Linear weight [out, in] they stand for (a transposed view)."""
    groups, out_features = scales.shape
    q = unpack(qweight).reshape(groups, -1, out_features).float()  # [in/g, g, out]
    s = scales.float()  # [in/g, out]
    w = torch.addcmul(
        (-unpack(qzeros) * s)[:, None, :], q, s[:, None, :]
    )  # (q - zero) * scale in one pass over the weight
    return w.reshape(-1, out_features).T  # [out, in]

"""Int4 arithmetic and the AutoAWQ GEMM packing, checked against an independent transcription of AutoAWQ."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nvila.ops import int4

#: AutoAWQ `WQLinear_GEMM.from_linear`: bits 4*i of a word hold column ORDER_MAP[i] of its block of eight.
ORDER_MAP = [0, 2, 4, 6, 1, 3, 5, 7]


def reference_unpack(packed: torch.Tensor) -> np.ndarray:
    """Word by word, nibble by nibble, the inverse of AutoAWQ's `qweight[:, col] |= v[:, col*8 + order[i]] << 4i`."""
    rows, words = packed.shape
    out = np.zeros((rows, words * 8), dtype=np.int64)
    for r in range(rows):
        for j in range(words):
            word = int(packed[r, j]) & 0xFFFFFFFF
            for i in range(8):
                out[r, j * 8 + ORDER_MAP[i]] = (word >> (4 * i)) & 0xF
    return out


def reference_dequantize(qweight, qzeros, scales, group_size: int) -> np.ndarray:
    """AutoAWQ `dequantize_gemm`: [in, out] = (q - zero) * scale, zeros and scales repeated over each group."""
    q = reference_unpack(qweight)
    zeros = np.repeat(reference_unpack(qzeros), group_size, axis=0)
    return (q - zeros) * np.repeat(scales.float().numpy(), group_size, axis=0)


def test_pack_matches_a_hand_written_word():
    # values 0..7: nibble i holds value ORDER_MAP[i] -> nibbles (low to high) 0 2 4 6 1 3 5 7
    assert int(int4.pack(torch.arange(8)[None])) == 0x75316420
    # 15 in the last column sets the top nibble: the word is negative as an int32
    values = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 15]])
    assert int(int4.pack(values)) == 0xF0000000 - 2**32


def test_pack_unpack_round_trip_and_reference_order():
    values = torch.randint(0, 16, (5, 64), generator=torch.Generator().manual_seed(0))
    packed = int4.pack(values)
    assert packed.dtype == torch.int32 and packed.shape == (5, 8)
    assert torch.equal(int4.unpack(packed), values.int())
    assert np.array_equal(reference_unpack(packed), values.numpy())


def test_linear_packing_matches_autoawq_dequantization():
    weight = torch.randn(48, 64, generator=torch.Generator().manual_seed(1))  # nn.Linear [out, in]
    packed = int4.pack_linear(weight, group_size=16)
    assert packed["qweight"].shape == (64, 6) and packed["qzeros"].shape == (4, 6)
    assert packed["scales"].shape == (4, 48) and packed["scales"].dtype == torch.float16
    reference = reference_dequantize(packed["qweight"], packed["qzeros"], packed["scales"], 16)  # [in, out]
    ours = int4.unpack_linear(packed["qweight"], packed["qzeros"], packed["scales"])  # [out, in]
    assert np.allclose(ours.numpy(), reference.T, atol=1e-6)


@pytest.mark.parametrize("shift", [0.0, 3.0, -3.0])  # groups spanning zero, all positive, all negative
def test_quantization_error_is_at_most_half_a_step(shift):
    weight = torch.randn(32, 256, generator=torch.Generator().manual_seed(2)) + shift
    q, zeros, scales = int4.quantize_groups(weight, 64)
    assert int(q.min()) >= 0 and int(q.max()) <= 15 and int(zeros.min()) >= 0 and int(zeros.max()) <= 15
    error = (int4.dequantize_groups(q, zeros, scales) - weight).abs().reshape(32, 4, 64)
    step = scales.float()[..., None]
    assert bool((error <= 0.51 * step + 1e-6).all())
    assert float(error.mean() / step.mean()) < 0.3  # rounding error averages a quarter step


def test_group_size_must_divide_the_input_width():
    with pytest.raises(ValueError, match="group size 48 does not divide in_features 64"):
        int4.quantize_groups(torch.zeros(8, 64), 48)

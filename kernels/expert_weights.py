"""Expert weights at the precisions MoE models are served in: the stored formats, their quantization from a
float tensor, their exact dequantization, and the per-step quantization of activations the FP8 format uses.

FP8 with 128x128 block scales (DeepSeek-V3/R1's checkpoint format, `quantization_config.weight_block_size`
[128, 128]): each weight [N, K] is float8_e4m3fn with one float32 scale per 128x128 block,
`weight_scale_inv` [ceil(N/128), ceil(K/128)], W ~ q * scale_inv[n // 128, k // 128]. A block's scale is
its amax / 448 (e4m3's largest finite value). Activations are quantized at run time per token and per
128-element group along K (DeepSeek-V3 technical report, section 3.3; vLLM/SGLang
`per_token_group_quant_fp8`): x ~ x_q * sx[t, k // 128], so both operands of every 128-wide K step carry
one scale each (W8A8).

MXFP4 (gpt-oss's checkpoint format; OCP Microscaling Formats (MX) v1.0): FP4 E2M1 values (sign, 2 exponent
bits, 1 mantissa bit: +-{0, 0.5, 1, 1.5, 2, 3, 4, 6}) packed two per byte, the element at the even K index in
the low nibble (gpt-oss's `*_blocks` [E, N, K/32, 16] bytes, stored here as [E, N, K/2]), and one E8M0 scale
per 32 consecutive elements along K (`*_scales` [E, N, K/32] uint8: a biased exponent, 2^(s - 127); a K
that is not a multiple of 32 ends in a partial block, which gpt-oss never needs but small test configs do).
The
shared exponent is floor(log2(amax)) - 2 (the OCP rule: minus E2M1's largest exponent), elements are rounded
to nearest E2M1, ties to even, and clamped to +-6. Weight-only: every E2M1 value times a power of two is
exact in bf16, fp16 (in range) and fp32, so a kernel can widen weights in registers and lose nothing.

Expert stacks are [E, N, K] with the nn.Linear layout (rows = output features). A stacked gate_up [E, 2F, H]
is blocked over its 2F rows as one matrix: identical to DeepSeek's separate gate and up blocks whenever
F is a multiple of 128 (DeepSeek-V3's expert width is 2048).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from kernels.fp8 import AMAX_FLOOR, E4M3_MAX, fp8_dtype
from kernels.op import as_float64

FP8_BLOCK = 128  # rows and columns of a weight block, and the activation group along K
MX_BLOCK = 32  # elements sharing one E8M0 scale
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # magnitude of codes 0..7; bit 3 is the sign
E2M1_MAX = 6.0
E2M1_EMAX = 2  # exponent of E2M1's largest normal value (4 = 2^2 * 1.0; 6 = 2^2 * 1.5)
E8M0_BIAS = 127
# Smallest biased scale exponent the quantizer writes: 2^(1 - 127) is still a normal float32, so a kernel can
# build the scale from its bits; blocks whose amax is below ~2^-124 (never a trained weight) lose precision.
E8M0_MIN = 1
WEIGHT_FORMATS = ("fp8-block", "mxfp4")


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


class Fp8BlockWeight(NamedTuple):
    """Experts' weights as e4m3 values and one float32 scale per 128x128 block: W ~ q * scale_inv.

    A NamedTuple so that everything that walks input sets (byte counts, rotation) sees its tensors."""

    q: torch.Tensor  # [E, N, K] float8_e4m3fn
    scale_inv: torch.Tensor  # [E, ceil(N/128), ceil(K/128)] float32

    @property
    def shape(self) -> torch.Size:
        return self.q.shape

    def dequantize(self, dtype: torch.dtype = torch.float32, experts=None) -> torch.Tensor:
        """q * scale_inv in `dtype` (float64 is exact; float32 rounds the product once), for all experts
        or the ones indexed by `experts` (an int or an index tensor)."""
        q = self.q if experts is None else self.q[experts]
        s = self.scale_inv if experts is None else self.scale_inv[experts]
        n, k = q.shape[-2:]
        full = s.repeat_interleave(FP8_BLOCK, -2)[..., :n, :].repeat_interleave(FP8_BLOCK, -1)[..., :k]
        work = torch.float64 if dtype == torch.float64 else torch.float32
        return (q.to(work) * full.to(work)).to(dtype)

    def dequantize64(self, experts=None) -> torch.Tensor:
        return self.dequantize(torch.float64, experts)

    def nbytes(self) -> int:
        return self.q.numel() + 4 * self.scale_inv.numel()


class Mxfp4Weight(NamedTuple):
    """Experts' weights as packed FP4 E2M1 codes and one E8M0 exponent per 32 elements along K."""

    blocks: torch.Tensor  # [E, N, K/2] uint8: element 2i in the low nibble, 2i + 1 in the high one
    scales: torch.Tensor  # [E, N, ceil(K/32)] uint8: biased exponents, scale 2^(s - 127)

    @property
    def shape(self) -> torch.Size:
        *lead, k2 = self.blocks.shape
        return torch.Size((*lead, 2 * k2))

    def dequantize(self, dtype: torch.dtype = torch.float32, experts=None) -> torch.Tensor:
        """Exact in any float dtype whose range holds the values (bf16, fp32, fp64; fp16 for scales within
        2^-24..2^13)."""
        b = self.blocks if experts is None else self.blocks[experts]
        s = self.scales if experts is None else self.scales[experts]
        signed = E2M1_VALUES + tuple(-v for v in E2M1_VALUES)
        table = torch.tensor(signed, dtype=torch.float32, device=b.device)
        codes = torch.stack([b & 0xF, b >> 4], dim=-1).flatten(-2).long()  # [.., N, K] in K order
        scale = torch.exp2(s.float() - E8M0_BIAS).repeat_interleave(MX_BLOCK, -1)[..., :codes.shape[-1]]
        work = torch.float64 if dtype == torch.float64 else torch.float32
        return (table[codes].to(work) * scale.to(work)).to(dtype)

    def dequantize64(self, experts=None) -> torch.Tensor:
        return self.dequantize(torch.float64, experts)

    def nbytes(self) -> int:
        return self.blocks.numel() + self.scales.numel()


def quantize_fp8_block(w: torch.Tensor) -> Fp8BlockWeight:
    """[..., N, K] float -> e4m3 with one scale (amax / 448) per 128x128 block (partial edge blocks padded
    with zeros, which do not change their amax)."""
    *lead, n, k = w.shape
    nb, kb = _cdiv(n, FP8_BLOCK), _cdiv(k, FP8_BLOCK)
    padded = F.pad(w.float(), (0, kb * FP8_BLOCK - k, 0, nb * FP8_BLOCK - n))
    blocks = padded.view(*lead, nb, FP8_BLOCK, kb, FP8_BLOCK)
    scale = blocks.abs().amax(dim=(-3, -1)).clamp(min=AMAX_FLOOR) / E4M3_MAX  # [..., nb, kb]
    q = (blocks / scale[..., :, None, :, None]).clamp(-E4M3_MAX, E4M3_MAX).to(fp8_dtype())
    q = q.view(*lead, nb * FP8_BLOCK, kb * FP8_BLOCK)[..., :n, :k].contiguous()
    return Fp8BlockWeight(q, scale.contiguous())


def quantize_groups(x: torch.Tensor, group: int = FP8_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations [M, K] -> (x_q e4m3 [M, K], scale float32 [M, ceil(K/group)]): one scale per token and
    K group, amax / 448, computed in float32 from the stored values (the implementations and the reference
    call this same function, so the check isolates the GEMM from the intended quantization)."""
    m, k = x.shape
    g = _cdiv(k, group)
    padded = F.pad(x.float(), (0, g * group - k)).view(m, g, group)
    scale = padded.abs().amax(dim=-1).clamp(min=AMAX_FLOOR) / E4M3_MAX  # [M, G]
    q = (padded / scale[..., None]).clamp(-E4M3_MAX, E4M3_MAX).to(fp8_dtype())
    return q.view(m, g * group)[:, :k].contiguous(), scale


def dequantize_groups(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float64,
                      group: int = FP8_BLOCK) -> torch.Tensor:
    k = q.shape[-1]
    work = torch.float64 if dtype == torch.float64 else torch.float32
    return (q.to(work) * scale.repeat_interleave(group, -1)[..., :k].to(work)).to(dtype)


def _round_e2m1(mag: torch.Tensor) -> torch.Tensor:
    """Codes 0..7 of the nearest E2M1 magnitude to `mag` (already <= 6), ties to the even code."""
    values = torch.tensor(E2M1_VALUES, dtype=mag.dtype, device=mag.device)
    mids = (values[1:] + values[:-1]) / 2
    idx = torch.bucketize(mag, mids)  # mids[idx - 1] < mag <= mids[idx]: a tie lands on the lower code
    tie = (idx < len(mids)) & (mag == mids[idx.clamp(max=len(mids) - 1)])
    return torch.where(tie & (idx % 2 == 1), idx + 1, idx)


def quantize_mxfp4(w: torch.Tensor) -> Mxfp4Weight:
    """[..., N, K] float (K even) -> packed E2M1 codes and E8M0 scales (OCP MX v1.0). Where K is not a
    multiple of 32 the last block is partial (the spec allows it; gpt-oss's widths never need it)."""
    *lead, n, k = w.shape
    if k % 2:
        raise ValueError(f"MXFP4 packs two elements a byte: K must be even, got {k}")
    nb = _cdiv(k, MX_BLOCK)
    groups = F.pad(w.float(), (0, nb * MX_BLOCK - k)).reshape(*lead, n, nb, MX_BLOCK)
    amax = groups.abs().amax(dim=-1)
    _, e = torch.frexp(amax)  # amax = m * 2^e, m in [0.5, 1): floor(log2(amax)) = e - 1, exactly
    exp = (e - 1 - E2M1_EMAX).float()
    biased = (exp + E8M0_BIAS).clamp(E8M0_MIN, 254)
    scaled = groups / torch.exp2(biased - E8M0_BIAS)[..., None]
    codes = _round_e2m1(scaled.abs().clamp(max=E2M1_MAX)) | ((scaled < 0).long() << 3)
    codes = codes.reshape(*lead, n, nb * MX_BLOCK)[..., :k].to(torch.uint8)
    packed = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return Mxfp4Weight(packed.contiguous(), biased.to(torch.uint8).contiguous())


def quantize(w: torch.Tensor, fmt: str):
    """The offline quantization of an expert stack [E, N, K] into `fmt` (one of WEIGHT_FORMATS)."""
    if fmt == "fp8-block":
        return quantize_fp8_block(w)
    if fmt == "mxfp4":
        return quantize_mxfp4(w)
    raise ValueError(f"unknown expert weight format {fmt!r}; choose from {', '.join(WEIGHT_FORMATS)}")


def stored_bytes(n: int, k: int, fmt: str) -> int:
    """Bytes one [N, K] matrix takes in `fmt`, its scales included."""
    if fmt == "fp8-block":
        return n * k + 4 * _cdiv(n, FP8_BLOCK) * _cdiv(k, FP8_BLOCK)
    if fmt == "mxfp4":
        return n * k // 2 + n * _cdiv(k, MX_BLOCK)
    raise ValueError(f"unknown expert weight format {fmt!r}; choose from {', '.join(WEIGHT_FORMATS)}")


def quantization_error(w: torch.Tensor, fmt: str) -> float:
    """||deq(q(w)) - w|| / ||w||: the intended error of the format (not part of any check)."""
    ref = as_float64(w)
    return ((quantize(w, fmt).dequantize64() - ref).norm() / ref.norm()).item()

"""Triton decode GEMM (tiled and split-K) against the float64 reference, under the interpreter on a CPU."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from triton_helpers import DEVICE, INTERPRETER_DTYPES, assert_close, nan_like

from kernels import gemm
from kernels.triton import gemm as tgemm

pytestmark = pytest.mark.interpreter
NO_CUDA_BF16 = "needs CUDA (the interpreter's bf16 tl.dot is wrong)"

# (M, K, N, split_k): ragged K and N against the 32-wide interpreter tiles; split_k None = heuristic
SHAPES = [
    (1, 64, 96, 1),
    (1, 200, 70, 3),  # last split shorter than the others
    (3, 130, 33, 4),
    (5, 96, 50, 8),  # more splits than K blocks: some splits are empty and must write zeros
    (16, 96, 64, 2),
    (17, 64, 50, 1),  # two M tiles, the second with one row
    (33, 48, 40, None),
]


@pytest.mark.parametrize("dtype", INTERPRETER_DTYPES, ids=str)
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("m,k,n,split_k", SHAPES)
def test_linear_matches_reference(m, k, n, split_k, bias, dtype):
    inputs = gemm.make_inputs(gemm.GemmShape(m, k, n, bias), dtype, DEVICE, seed=m * 1000 + k + n)
    out = nan_like((m, n), dtype)
    y = tgemm.triton_linear(**inputs, out=out, split_k=split_k)
    assert y is out
    assert_close(y, gemm.reference(**inputs)[0], dtype, f"gemm M{m} K{k} N{n} split{split_k}")


def test_linear_accepts_strided_input():
    """x as a column slice of a wider tensor (how layer views are passed)."""
    wide = torch.randn(3, 150, device=DEVICE)
    x = wide[:, 20:120]
    w = torch.randn(40, 100, device=DEVICE) / 10
    assert_close(tgemm.triton_linear(x, w), gemm.reference(x, w)[0], torch.float32, "strided x")


def test_linear_rejects_bad_arguments():
    x = torch.randn(2, 8, device=DEVICE)
    with pytest.raises(ValueError, match="expected x"):
        tgemm.triton_linear(x, torch.randn(4, 9, device=DEVICE))
    with pytest.raises(ValueError, match="float16"):
        tgemm.triton_linear(x, torch.randn(4, 8, device=DEVICE, dtype=torch.float16))
    with pytest.raises(ValueError, match="split_k"):
        tgemm.triton_linear(torch.randn(20, 8, device=DEVICE), torch.randn(4, 8, device=DEVICE), split_k=2)
    with pytest.raises(ValueError, match="out has shape"):
        tgemm.triton_linear(x, torch.randn(4, 8, device=DEVICE), out=torch.empty(2, 5, device=DEVICE))


def test_split_heuristic_on_llama_8b_shapes():
    """The figures quoted in choose_split_k's docstring (132 SMs, H100/H200)."""
    h, ffn = 4096, 14336
    # choose_split_k(M, N, K, SMs)
    assert tgemm.choose_split_k(1, 6144, h, 132) == 4  # qkv
    assert tgemm.choose_split_k(1, h, h, 132) == 8  # o_proj
    assert tgemm.choose_split_k(1, h, ffn, 132) == 8  # down_proj
    assert tgemm.choose_split_k(1, 2 * ffn, h, 132) == 1  # gate/up: enough N tiles already
    assert tgemm.choose_split_k(17, h, h, 132) == 1  # beyond one 16-row tile: tiled kernel
    assert tgemm.choose_split_k(1, h, 300, 132) == 1  # K too short to split


# Shared memory one config needs: stages x (BLOCK_M + BLOCK_N) x BLOCK_K x 2 bytes (16-bit operands)
SMEM_BUDGET = {(9, 0): 227 * 1024, (10, 0): 227 * 1024, (8, 0): 163 * 1024, (8, 6): 99 * 1024,
               (12, 0): 99 * 1024}


@pytest.mark.parametrize("cap", list(SMEM_BUDGET), ids=str)
def test_autotune_configs_fit_shared_memory(cap):
    tiled, splitk = tgemm.configs_for(cap)
    assert 1 <= len(tiled) <= 8 and 1 <= len(splitk) <= 4, "keep autotuning short"
    for c in tiled + splitk:
        bm = c.kwargs.get("BLOCK_M", 16)
        need = c.num_stages * (bm + c.kwargs["BLOCK_N"]) * c.kwargs["BLOCK_K"] * 2
        assert need <= SMEM_BUDGET[cap], f"{c} needs {need} B of shared memory on sm_{cap[0]}{cap[1]}"
    assert any(c.kwargs["BLOCK_M"] == 16 for c in tiled), "decode batches <= 16 need a 16-row tile"


def test_prune_keeps_tiles_no_taller_than_the_batch():
    tiled, _ = tgemm.configs_for((9, 0))
    x16 = torch.empty(3, 8, dtype=torch.float16)
    kept = tgemm._prune_tiled(tiled, {"M": 3, "x_ptr": x16})
    assert kept and all(c.kwargs["BLOCK_M"] == 16 for c in kept)
    assert len(tgemm._prune_tiled(tiled, {"M": 256, "x_ptr": x16})) == len(tiled)


def test_prune_halves_block_k_for_fp32_operands():
    """fp32 tiles would overflow shared memory with the 16-bit lists (e.g. 240 KB on Hopper)."""
    tiled, splitk = tgemm.configs_for((9, 0))
    x32 = torch.empty(3, 8, dtype=torch.float32)
    for pruned, full in ((tgemm._prune_tiled(tiled, {"M": 3, "x_ptr": x32}), tiled[:2]),
                         (tgemm._prune_splitk(splitk, {"x_ptr": x32}), splitk)):
        assert [c.kwargs["BLOCK_K"] * 2 for c in pruned] == [c.kwargs["BLOCK_K"] for c in full]
        assert [c.num_stages for c in pruned] == [c.num_stages for c in full]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA_BF16)
@pytest.mark.parametrize("m", [1, 4, 16, 64, 256])
def test_linear_bf16_on_gpu(m):
    """Autotuned kernels (both paths) at a Llama-like K, N in bf16."""
    inputs = gemm.make_inputs(gemm.GemmShape(m, 4096, 1536, True), torch.bfloat16, "cuda", seed=m)
    out = nan_like((m, 1536), torch.bfloat16)
    y = tgemm.triton_linear(**inputs, out=out)
    assert_close(y, gemm.reference(**inputs)[0], torch.bfloat16, f"bf16 gemm M{m}")

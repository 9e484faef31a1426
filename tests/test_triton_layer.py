"""The whole decode layer with the triton backend (and mixes) against the float64 layer reference."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from triton_helpers import DEVICE, INTERPRETER_DTYPES, assert_close

from bench.configs.model_configs import MODELS
from kernels.backends import parse_backend
from kernels.layer import LayerDims, layer_forward, layer_reference, make_layer_inputs

pytestmark = pytest.mark.interpreter

TINY = MODELS["tiny"]
DIMS = {
    "tiny": LayerDims(TINY.hidden, TINY.heads, TINY.kv_heads, TINY.head_dim, TINY.ffn, TINY.vocab,
                      TINY.qkv_bias, TINY.norm_eps, TINY.rope_theta),
    # GQA ratio 8, head dim 64, q/k/v bias (Qwen-style), an FFN width that is not a block multiple
    "gqa8-bias": LayerDims(hidden=128, heads=8, kv_heads=1, head_dim=64, ffn=200, vocab=256, qkv_bias=True),
}
SPECS = ["triton", "triton/attention=torch/gemm=torch", "torch/norm=triton/rope=triton/activation=triton"]


@pytest.mark.parametrize("dtype", INTERPRETER_DTYPES, ids=str)
@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("dims", list(DIMS))
def test_layer_matches_reference(dims, spec, dtype):
    d = DIMS[dims]
    batch, context = 3, 21
    inputs = make_layer_inputs(d, batch, context, dtype, DEVICE, seed=11)
    ref = layer_reference(d, **inputs)  # before the forward: it writes the caches in place
    y, r2 = layer_forward(d, parse_backend(spec), **inputs)
    assert_close(y, ref[0], dtype, f"{dims} {spec} y")
    assert_close(r2, ref[1], dtype, f"{dims} {spec} residual")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_layer_captures_in_a_cuda_graph():
    """Warm-up (compile + autotune) outside, then capture: no host syncs or autotuning may happen inside."""
    d = LayerDims(hidden=1024, heads=16, kv_heads=4, head_dim=64, ffn=2816, vocab=1024)
    inputs = make_layer_inputs(d, 4, 1000, torch.bfloat16, "cuda", seed=3)
    backends = parse_backend("triton")
    eager = layer_forward(d, backends, **inputs)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = layer_forward(d, backends, **inputs)
    graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(captured, eager):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # same kernels, same inputs: bit-identical
    ref = layer_reference(d, **inputs)
    for got, want in zip(captured, ref):
        assert_close(got, want, torch.bfloat16, "bf16 triton layer")

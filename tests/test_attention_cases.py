"""Every op of the MLA and GQA attention blocks as the harness sees it (an OpCase with FLOPs, bytes, fresh
inputs and a float64 reference) passes the correctness gate in both backends (Triton under the interpreter
on a CPU), at small DeepSeek-V3-, gpt-oss- and Qwen3-shaped dims."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from triton_helpers import DEVICE

from bench.measure.gate import check_case
from kernels import attention_block, attention_cases, mla_block
from kernels.rope_scaling import RopeScaling

YARN = RopeScaling("yarn", factor=40.0, original_max_position_embeddings=64, mscale=1.0, mscale_all_dim=1.0)
MLA = mla_block.MlaDims(hidden=96, heads=20, q_lora_rank=48, kv_lora_rank=64, qk_nope_head_dim=32,
                        qk_rope_head_dim=16, v_head_dim=32, rope_scaling=YARN)
MLA_NO_Q_LORA = mla_block.MlaDims(hidden=96, heads=4, q_lora_rank=0, kv_lora_rank=64, qk_nope_head_dim=32,
                                  qk_rope_head_dim=16, v_head_dim=64, o_bias=True)
GPT_OSS = attention_block.AttentionDims(hidden=96, heads=8, kv_heads=2, head_dim=64, qkv_bias=True, o_bias=True,
                                        window=16, sinks=True)
QWEN3 = attention_block.AttentionDims(hidden=96, heads=4, kv_heads=2, head_dim=32, qk_norm=True)

BLOCKS = {
    "mla-decode": mla_block.decode_op_shapes(MLA, batch=3, context=40),
    "mla-decode-no-q-lora": mla_block.decode_op_shapes(MLA_NO_Q_LORA, batch=2, context=20),
    "mla-prefill": mla_block.prefill_op_shapes(MLA, batch=2, chunk=9, prefix=7),
    "gpt_oss-decode": attention_block.decode_op_shapes(GPT_OSS, batch=3, context=50),
    "gpt_oss-prefill": attention_block.prefill_op_shapes(GPT_OSS, batch=2, chunk=20, prefix=30),
    "qwen3-decode": attention_block.decode_op_shapes(QWEN3, batch=3, context=20),
    "qwen3-prefill": attention_block.prefill_op_shapes(QWEN3, batch=1, chunk=12, prefix=5),
}
PARAMS = [(block, name) for block, shapes in BLOCKS.items() for name in shapes]


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("block,name", PARAMS, ids=[f"{b}-{n}" for b, n in PARAMS])
def test_torch_ops_pass_the_gate(block, name, dtype):
    (case,) = [c for c in attention_cases.op_cases({name: BLOCKS[block][name]},
                                                   {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype], DEVICE)]
    assert case.flops >= 0 and case.bytes > 0
    check = check_case(case, "torch", dtype)
    assert check.ok, f"{block} {name}: {check.reason}"


@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", ["fp32"])
@pytest.mark.parametrize("block,name", PARAMS, ids=[f"{b}-{n}" for b, n in PARAMS])
def test_triton_ops_pass_the_gate(block, name, dtype):
    (case,) = attention_cases.op_cases({name: BLOCKS[block][name]},
                                       torch.float32, DEVICE, ("triton",))
    check = check_case(case, "triton", dtype)
    assert check.ok, f"{block} {name}: {check.reason}"


def test_window_bounds_the_block_and_mla_reads_its_latent_once():
    full = attention_block.decode_op_shapes(attention_block.AttentionDims(96, 8, 2, 64), 3, 4096)
    windowed = attention_block.decode_op_shapes(GPT_OSS, 3, 4096)
    assert windowed["attention"][1].flops(windowed["attention"][2]) * 4096 == \
        full["attention"][1].flops(full["attention"][2]) * 16
    mla = mla_block.decode_op_shapes(MLA, batch=3, context=40)
    _, module, shape = mla["mla_attention"]
    assert module.min_bytes(shape, 2) // 2 == 3 * 40 * MLA.latent_width + 3 * MLA.heads * (80 + 64)

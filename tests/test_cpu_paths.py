"""The run's note on a dtype the CPU cannot multiply natively: present without the flags, absent with them,
and carrying the best figure the chooser measured."""
import torch

from bench.report import cpu_paths
from kernels import cpu_gemm


def test_no_native_bf16_is_said_with_the_best_path_found(monkeypatch):
    monkeypatch.setattr(cpu_gemm, "_CHOSEN", {})  # only this test's class, and the process's cache left alone
    x, w = torch.randn(2, 64).bfloat16(), (torch.randn(128, 64) * 0.125).bfloat16()
    cpu_gemm.cpu_linear(x, w)
    note = cpu_paths.lacking_note("bf16", flags={"avx2", "fma"})
    winner = cpu_gemm.chosen_path(2, 64, 128, torch.bfloat16)
    assert note.startswith("bf16 on this CPU: no native bf16 matmul") and f"best path found {winner}," in note
    assert "M=2 K=64 N=128" in note and f"*{winner} " in cpu_paths.paths_table()


def test_native_flags_or_fp32_mean_no_note():
    assert cpu_paths.lacking_note("bf16", flags={"avx512_bf16"}) is None
    assert cpu_paths.lacking_note("fp16", flags={"amx_fp16"}) is None
    assert cpu_paths.lacking_note("fp32", flags=set()) is None
    assert "no native fp16 matmul" in cpu_paths.lacking_note("fp16", flags={"avx2"})

"""The llama.cpp peer: the GGUF holds tokenbench's weights bit for bit in llama.cpp's layout, bad input is one
line, a missing llama-cpp-python is said plainly, and (where it is installed) a tiny run fills every row
with all three sides checked. No speed is asserted."""
import io

import pytest
import torch

pytest.importorskip("transformers", reason="transformers is a test dependency (pip install .[test])")

from bench.configs.model_configs import MODELS
from bench.sweeps import hf_peer, llamacpp_gguf, llamacpp_peer


def test_rope_permute_interleaves_each_heads_halves():
    heads, dim = 2, 8
    w = torch.arange(heads * dim, dtype=torch.float32)[:, None].expand(-1, 3)
    p = llamacpp_gguf.rope_permute(w, heads)
    for h in range(heads):
        for j in range(dim // 2):  # rotate-half pair (j, j + D/2) becomes rows (2j, 2j + 1)
            assert p[h * dim + 2 * j, 0] == h * dim + j and p[h * dim + 2 * j + 1, 0] == h * dim + j + dim // 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gguf_holds_our_weights_in_llamacpps_layout(dtype, tmp_path):
    gguf = pytest.importorskip("gguf", reason="gguf is optional (pip install gguf)")
    m = MODELS["tiny"]
    model, ours = hf_peer.build_models(m, dtype, "sdpa")
    path = llamacpp_gguf.write_gguf(tmp_path / "tiny.gguf", m, ours, context=16)
    reader = gguf.GGUFReader(str(path))
    stored = {t.name: t for t in reader.tensors}
    expected = llamacpp_gguf.gguf_tensors(m, ours)
    assert list(stored) == [name for name, _ in expected] and len(stored) == 3 + 9 * m.layers
    d = m.layer_dims
    for name, tensor in expected:
        t = stored[name]
        assert list(reversed(t.shape.tolist())) == list(tensor.shape), name  # GGUF lists dims innermost first
        assert bytes(t.data.tobytes()) == tensor.contiguous().view(torch.uint8).numpy().tobytes(), name
    q = llamacpp_gguf.rope_permute(model.model.layers[0].self_attn.q_proj.weight, d.heads)
    assert torch.equal(q, dict(expected)["blk.0.attn_q.weight"])
    assert stored["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32


@pytest.mark.parametrize("argv", [["--dtype", "fp8"], ["--model", "nope"], ["--batch", "0"],
                                  ["--context", "2"], ["--bogus"]])
def test_bad_input_is_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(llamacpp_peer.main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tokenbench: error:") and "\n" not in err


def test_without_llama_cpp_it_says_so(monkeypatch, capsys):
    pytest.importorskip("gguf", reason="gguf is optional (pip install gguf)")
    monkeypatch.setattr(llamacpp_peer, "llama_cpp_module", lambda: None)
    assert llamacpp_peer.main(["--model", "tiny"]) == 2
    assert "llama.cpp is not installed" in capsys.readouterr().err


def test_tiny_run_fills_every_row_with_three_checked_sides():
    pytest.importorskip("gguf", reason="gguf is optional (pip install gguf)")
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is optional (pip install llama-cpp-python)")
    out = io.StringIO()
    rows = llamacpp_peer.run(["--model", "tiny", "--context", "9", "--batch", "1,3", "--dtype", "fp32,bf16",
                              "--rounds", "1", "--steps", "2"], out=out)
    assert [(r.dtype, r.batch) for r in rows] == [("fp32", 1), ("fp32", 3), ("bf16", 1), ("bf16", 3)]
    for r in rows:
        assert r.valid, (r.dtype, r.batch, r.rel_error)
        assert all(len(v) == 1 and v[0] > 0 for v in r.tokens_per_s.values())
    assert "| bf16 | 3 |" in out.getvalue() and "llama.cpp tok/s" in out.getvalue()

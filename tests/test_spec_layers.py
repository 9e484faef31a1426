"""Every architecture's layers built from its config (kernels/spec_layer.py) and the step composed by layer
type (kernels/spec_model.py): each op and layer passes the float64 gate in decode, prefill and mixed; `run` on
a CPU writes only valid rows for a tiny config of each architecture, and its step is the layer types by their
counts."""
import json

import pytest
import torch

from bench.cli import main
from bench.configs.model_configs import get_model
from bench.measure.gate import check_case
from kernels.prefill_layer import Chunk
from kernels.spec_layer import Rows
from kernels.spec_model import ZIPF_S, layer_cases, layer_types, uses_spec_layers

TINY = ["tiny-qwen3", "tiny-qwen3-moe", "tiny-moe", "tiny-deepseek-v3", "tiny-gpt-oss", "tiny-mistral",
        "tiny-qwen2"]
# `run` per architecture: decode for each; prefill and mixed for the two whose layers differ most from Llama's
# (MLA with dense first layers and the group-limited router; sliding/full alternation, sinks, biases,
# gpt-oss's router). Every architecture's prefill and mixed cases pass the gate in test_every_case_passes_the_gate...
RUNS = [*((name, "decode") for name in ("tiny-qwen3", "tiny-qwen3-moe", "tiny-moe", "tiny-deepseek-v3",
                                        "tiny-gpt-oss")),
        *((name, phase) for name in ("tiny-deepseek-v3", "tiny-gpt-oss") for phase in ("prefill", "mixed"))]


@pytest.mark.parametrize("name,types", [
    ("deepseek-v3", [("mla-dense", 3), ("mla-moe", 58)]),
    ("gpt-oss-120b", [("sliding128-moe", 18), ("full-moe", 18)]),
    ("gpt-oss-20b", [("sliding128-moe", 12), ("full-moe", 12)]),
    ("qwen3-30b-a3b", [("", 48)]),
    ("tiny-qwen3-moe", [("full-dense", 1), ("full-moe", 2)]),
])
def test_layer_types_by_count(name, types):
    assert [(t.tag, t.count) for t in layer_types(get_model(name).spec)] == types


@pytest.mark.parametrize("name", ["llama-3.1-8b", "mistral-7b", "qwen2.5-7b", "tiny"])
def test_dense_llama_shaped_models_keep_the_dense_layer(name):
    assert not uses_spec_layers(get_model(name).spec)


@pytest.mark.parametrize("name", TINY)
def test_every_case_passes_the_gate_in_mixed_rows(name):
    # a mixed call holds both decode rows (context 9 > the tiny windows of 8) and a chunk continuing a prefix
    spec = get_model(name).spec
    for case in layer_cases(spec, Rows(2, 9, Chunk(1, 5, 3)), torch.float32, "cpu"):
        check = check_case(case, "torch", "fp32")
        assert check.ok, (case.name, check)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """One --layer-only run per tiny architecture and phase, shared by the tests below."""
    out = {}
    phases = {"decode": ["--batch", "2", "--context", "12"],
              "prefill": ["--phase", "prefill", "--prompt", "12", "--chunk", "8"],
              "mixed": ["--phase", "mixed", "--batch", "2", "--context", "12", "--chunk", "4",
                        "--prefix", "3"]}
    for name, phase in RUNS:
        folder = tmp_path_factory.mktemp(f"{name}-{phase}")
        assert main(["run", "--model", name, "--device", "cpu", "--dtype", "fp32", "--budget-s", "0.005",
                     "--layer-only", *phases[phase], "--out", str(folder)]) == 0
        (path,) = folder.glob("*.json")
        out[name, phase] = json.loads(path.read_text())
    return out


@pytest.mark.parametrize("name,phase", RUNS)
def test_run_writes_only_valid_rows_and_composes_the_step(tiny_runs, name, phase):
    record = tiny_runs[name, phase]
    assert record["rows"] and all(r["valid"] for r in record["rows"]), [r["op"] for r in record["rows"]
                                                                        if not r["valid"]]
    spec = get_model(name).spec
    types = layer_types(spec)
    moe = any(t.spec.mlp.kind == "moe" for t in types)
    steps = record["steps"]
    assert [s.get("routing") for s in steps] == (["uniform", f"zipf:{ZIPF_S:g}"] if moe else [None])
    for step in steps:
        assert step["valid"]
        assert step["layer_counts"] == {t.tag or t.spec.label: t.count for t in types}

        def total(op):
            return sum(r["seconds_p50"] for r in record["rows"] if r["op"] == op)

        expected = total("final_norm") + total("lm_head")
        for t in types:
            prefix = f"{t.tag}." if t.tag else ""
            if t.spec.mlp.kind == "dense":
                expected += t.count * total(prefix + "layer")
            else:
                moe_op = (f"{t.mlp_tag}." if t.mlp_tag else "") + f"moe_block/{step['routing']}"
                expected += t.count * (total(prefix + "attention_part") + total(moe_op))
        assert step["step_seconds"] == pytest.approx(expected)
        if moe:
            experts = step["experts"]
            assert 1 <= step["active_experts"] <= experts and step["max_tokens_per_expert"] >= 1


def test_skewed_routing_loads_the_heaviest_expert_more():
    # the MoE block of tiny-gpt-oss (8 experts, top-2) at 256 tokens: uniform spreads them (about 64 an expert),
    # Zipf concentrates them on the top-ranked experts
    from kernels.moe_routing import Routing
    from kernels.spec_layer import moe_case

    layer = get_model("tiny-gpt-oss").spec.layers[0]
    heaviest = {r.label: moe_case(layer, 256, r, torch.float32, "cpu").shape["max_tokens_per_expert"]
                for r in (Routing(), Routing("zipf", ZIPF_S))}
    assert heaviest[f"zipf:{ZIPF_S:g}"] > 1.5 * heaviest["uniform"]


def test_full_model_and_backend_mixes_are_refused_in_one_line(capsys, tmp_path):
    argv = ["run", "--model", "tiny-gpt-oss", "--device", "cpu", "--full-model", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "--full-model times dense Llama-shaped models only" in capsys.readouterr().err
    assert main(["verify", "--model", "tiny-qwen3", "--device", "cpu", "--backend",
                 "triton/attention=torch"]) == 2
    assert "runs one backend for every op" in capsys.readouterr().err


def test_verify_checks_every_case_of_a_deepseek_config(capsys):
    assert main(["verify", "--model", "tiny-deepseek-v3", "--device", "cpu", "--batch", "2",
                 "--context", "9"]) == 0
    out = capsys.readouterr().out
    assert "mla-moe.attention_part" in out and "FAIL" not in out

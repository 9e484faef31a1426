"""A model's step composed from its distinct layer types (kernels/spec_layer.py), each by its count in the
model:
    step = sum over types of count x layer + final_norm + lm_head,
where an MoE layer is its attention part + its MoE block measured at the step's token count under a routing
distribution (uniform, and Zipf with exponent ZIPF_S: kernels/moe_routing.py), so each routing gives its own
step. A dense layer is its whole-layer case. DeepSeek-V3: 3 x dense layer + 58 x (attention part + MoE block);
gpt-oss: 18 sliding + 18 full layers, each an attention part + the (shared) MoE block.

A model whose layers are all one dense Llama-shaped layer (GQA without q/k norm, window, sinks or an output
bias) keeps the dense layer of kernels/layer.py and kernels/prefill_layer.py: `uses_spec_layers` is False.
Rows of a model with several layer types carry the type's tag in their name ("sliding128-moe.attention_part").
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from kernels import attention_cases, gemm, norm
from kernels.layer_spec import LayerSpec, ModelSpec
from kernels.moe_routing import Routing
from kernels.spec_layer import LayerType, Rows, layer_case, moe_case, op_cases

ZIPF_S = 1.0  # the skewed routing every MoE step is also measured at
ROUTINGS = (Routing(), Routing("zipf", ZIPF_S))


def uses_spec_layers(model: ModelSpec) -> bool:
    """False for a model of one dense Llama-shaped layer type (measured by kernels/layer.py as before)."""
    if len(model.groups) > 1:
        return True
    layer = model.layers[0]
    a = layer.attention
    return a.kind != "gqa" or layer.mlp.kind != "dense" or a.qk_norm or bool(a.window) or a.sinks or a.o_bias


def _tag(layer: LayerSpec) -> str:
    return f"{layer.attention.label.replace(' ', '')}-{layer.mlp.kind}"


def layer_types(model: ModelSpec) -> list[LayerType]:
    """The distinct layers with their counts, in the order they first appear; tags only when there are
    several. Layers of one MoE MLP share its tag (mlp_tag) so the block is measured once per routing."""
    groups = model.groups
    tags = [_tag(layer) for layer, _ in groups]
    tags = [t if tags.count(t) == 1 else f"{t}{i}" for i, t in enumerate(tags)]
    mlps = list(dict.fromkeys(layer.mlp for layer, _ in groups if layer.mlp.kind == "moe"))
    out = []
    for (layer, n), tag in zip(groups, tags):
        mlp_tag = "" if layer.mlp.kind == "dense" or len(mlps) == 1 else f"moe{mlps.index(layer.mlp)}"
        out.append(LayerType(layer, n, tag if len(groups) > 1 else "", mlp_tag))
    return out


def named(tag: str, op: str) -> str:
    return f"{tag}.{op}" if tag else op


def moe_name(t: LayerType, routing: Routing) -> str:
    return named(t.mlp_tag, f"moe_block/{routing.label}")


def routings(model: ModelSpec) -> tuple:
    """The routing of each step: uniform and Zipf for a model with an MoE layer, (None,) otherwise."""
    return ROUTINGS if any(layer.mlp.kind == "moe" for layer, _ in model.groups) else (None,)


def model_op_cases(model: ModelSpec, rows: int, dtype: torch.dtype, device, backends) -> list:
    """final_norm and lm_head at `rows` rows (the tokens whose logits the step computes)."""
    shapes = {"final_norm": ("norm", norm, norm.NormShape(rows, model.hidden, model.norm_eps)),
              "lm_head": ("gemm", gemm, gemm.GemmShape(rows, model.hidden, model.vocab))}
    return attention_cases.op_cases(shapes, dtype, device, backends)


def layer_cases(model: ModelSpec, rows: Rows, dtype: torch.dtype, device, backends=("torch",),
                per_op: bool = True) -> list:
    """Every case of one layer call (`rows`) of every layer type, renamed by type: its ops (per_op), then
    the dense layer, or the MoE layer's attention part, whole layer and MoE block per routing (once per MoE
    MLP)."""
    out, seen_mlps = [], set()
    for t in layer_types(model):
        cases = op_cases(t.spec, rows, dtype, device, backends) if per_op else []
        if t.spec.mlp.kind == "dense":
            cases.append(layer_case(t.spec, rows, dtype, device, backends))
        else:
            cases.append(layer_case(t.spec, rows, dtype, device, backends, name="attention_part", mlp=False))
            cases.append(layer_case(t.spec, rows, dtype, device, backends))
        out += [_renamed(c, named(t.tag, c.name)) for c in cases]
        if t.spec.mlp.kind == "moe" and t.mlp_tag not in seen_mlps:
            seen_mlps.add(t.mlp_tag)
            for r in ROUTINGS:
                case = moe_case(t.spec, rows.tokens, r, dtype, device, backends)
                out.append(_renamed(case, moe_name(t, r)))
    return out


def _renamed(case, name: str):
    from dataclasses import replace

    return case if case.name == name else replace(case, name=name)


@dataclass(frozen=True)
class Composition:
    """A step's figure (seconds, FLOPs or bytes) and how it was composed."""

    value: float | None
    missing: tuple
    derivation: str
    layer_counts: dict


def compose(model: ModelSpec, value: Callable[[str], float | None], routing: Routing | None) -> Composition:
    """sum over layer types of count x (layer, or attention part + MoE block at `routing`) + final_norm +
    lm_head, from `value(row name)` (None where no valid row)."""
    total, missing, terms, counts = 0.0, [], [], {}
    for t in layer_types(model):
        parts = ([named(t.tag, "layer")] if t.spec.mlp.kind == "dense"
                 else [named(t.tag, "attention_part"), moe_name(t, routing)])
        figures = [value(p) for p in parts]
        missing += [p for p, f in zip(parts, figures) if f is None]
        if None not in figures:
            total += t.count * sum(figures)
        terms.append(f"{t.count} x {' + '.join(parts) if len(parts) == 1 else '(' + ' + '.join(parts) + ')'}")
        counts[t.tag or t.spec.label] = t.count
    for op in ("final_norm", "lm_head"):
        f = value(op)
        if f is None:
            missing.append(op)
        else:
            total += f
    derivation = " + ".join(terms) + " + final_norm + lm_head"
    return Composition(None if missing else total, tuple(missing), derivation, counts)

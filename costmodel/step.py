"""How a model's step is composed from measured parts, in one place: layers x layer + the model-level ops
(final_norm and lm_head for a decode step). Used for seconds, FLOPs, bytes and joules alike, by the sweeps
(decode, prefill, mixed, tp, fp8, moe), the workload's steps, the projection and the board energy. Two kinds
time less than a whole layer and compose their own variant here: fp8 (a layer's four projections + the LM
head, GEMMs only) and moe (the MoE layers' MLPs only)."""
from __future__ import annotations

DECODE_DERIVATION = "layers x layer + final_norm + lm_head"
MODEL_OPS = ("final_norm", "lm_head")  # the ops a decode step runs once, after every layer

# fp8: a dense decode layer's projections, and the op its GEMM-only step runs once after them
LAYER_GEMMS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
GEMM_MODEL_OPS = ("lm_head",)
GEMM_STEP_DERIVATION = ("layers x (qkv + o + gate_up + down) + lm_head: GEMMs only, attention and norms "
                        "excluded")
# moe: the MoE MLP (router + experts) of each MoE layer, nothing else
MOE_STEP_DERIVATION = "moe_layers x moe: the MoE MLPs only (attention, dense layers, LM head excluded)"


def compose(layers: int, per_layer: float, *once: float) -> float:
    """layers x per_layer + each figure of the ops run once per step."""
    return layers * per_layer + sum(once)


def compose_ops(layers: int, by_op: dict, field: str, layer_op: str = "layer", once=MODEL_OPS):
    """compose() over one figure (`field`) of rows keyed by op (dicts or records); None when any is missing."""
    def value(op):
        row = by_op.get(op)
        if row is None:
            return None
        return row.get(field) if isinstance(row, dict) else getattr(row, field, None)

    parts = [value(layer_op), *(value(op) for op in once)]
    if any(p is None for p in parts):
        return None
    return compose(layers, parts[0], *parts[1:])


def gemm_step(layers: int, by_op: dict) -> tuple[float, float]:
    """The GEMM-only decode step from one figure per GEMM (op -> seconds, or bytes): (one layer's GEMMs,
    layers x those + the LM head)."""
    per_layer = sum(by_op[op] for op in LAYER_GEMMS)
    return per_layer, compose(layers, per_layer, *(by_op[op] for op in GEMM_MODEL_OPS))


def moe_step(moe_layers: int, per_moe: float) -> float:
    """The MoE MLPs of one step: moe_layers x one MoE MLP's figure (seconds or bytes)."""
    return compose(moe_layers, per_moe)


def tokens_per_s_per_user(seconds: float, tokens: int = 1) -> float:
    """Tokens/s per user, the figure serving benchmarks call interactivity: the tokens one request receives
    (`tokens` decode steps, one token each) over the `seconds` they take. Steps record it as
    tokens_per_s_per_user, workload points as interactivity (the served-results convention); both are this."""
    return tokens / seconds


def decode_rates(batch: int, seconds: float) -> dict:
    """A decode step of `batch` sequences taking `seconds`: the device's tokens/s (one token per sequence)
    and each user's."""
    return {"tokens_per_s": batch / seconds, "tokens_per_s_per_user": tokens_per_s_per_user(seconds)}

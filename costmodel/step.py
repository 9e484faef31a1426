"""How a model's step is composed from measured parts, in one place: layers x layer + the model-level ops
(final_norm and lm_head for a decode step). Used for seconds, FLOPs, bytes and joules alike, by the sweeps
(decode, prefill, mixed, tp, fp8), the projection and the board energy."""
from __future__ import annotations

DECODE_DERIVATION = "layers x layer + final_norm + lm_head"
MODEL_OPS = ("final_norm", "lm_head")  # the ops a decode step runs once, after every layer


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

"""The FP8 sweep (`tokenbench fp8`): a model's decode projections and LM head timed in bf16 and in FP8
(torch._scaled_mm and the Triton FP8 GEMMs; per-tensor and per-channel scales) on the same shapes, each
verified first, then per precision the GEMM-only decode step (costmodel.step.gemm_step) and its economics.
Without FP8 the FP8 rows are recorded as skipped, with the reason."""
from __future__ import annotations

from collections.abc import Callable

from bench.derive import roofline
from costmodel.step import GEMM_MODEL_OPS, GEMM_STEP_DERIVATION, LAYER_GEMMS, gemm_step
from kernels import fp8, gemm
from kernels.dtypes import generator, randn
from kernels.op import OpCase


def gemm_shapes(model, batch: int) -> dict:
    """The decode projections of one layer and the LM head as (M, K, N) (biases left out on both sides)."""
    h, q, kv = model.hidden, model.q_size, model.kv_size
    ffn = model.moe_ffn if model.is_moe else model.ffn
    return {"qkv_proj": (batch, h, q + 2 * kv), "o_proj": (batch, q, h), "gate_up_proj": (batch, h, 2 * ffn),
            "down_proj": (batch, ffn, h), "lm_head": (batch, h, model.vocab)}


def bf16_case(name: str, m: int, k: int, n: int, device) -> OpCase:
    import torch

    s = gemm.GemmShape(m, k, n)

    def make(seed):
        g = generator(seed, device)
        return {"x": randn((m, k), torch.bfloat16, device, g), "w": randn((n, k), torch.bfloat16, device, g,
                                                                            scale=k**-0.5), "b": None}

    return OpCase(name=name, kind="gemm", flops=gemm.flops(s), bytes=gemm.min_bytes(s, 2), make_inputs=make,
                  reference=lambda inp: gemm.reference(**inp),
                  impls={"torch": lambda inp: gemm.torch_linear(**inp)}, shape=dict(s.__dict__))


def fp4_reason(device) -> str:
    return fp8.fp4_support(device)[1]


def run_fp8_sweep(plan, device, record: dict, writer, economics, scalings: list, backends: list,
                  support: tuple, say: Callable[[str], None]) -> set:
    """Every batch of `plan`: each GEMM in bf16, then in FP8 for every (backend, scaling), each row written
    as it is measured, then the batch's GEMM-only steps; the record is marked complete at the end.
    `support` is fp8.support(device); `say` prints a line about a row not timed (once per reason for
    skipped rows). Returns the reasons already said."""
    from bench.sweeps.decode_sweep import measure

    ok, why = support
    model = plan.model
    said: set = set()
    variants = [(b, s) for b in backends for s in scalings]
    skipped = {}  # precision key -> why its rows were not run
    nbytes = {}  # precision key -> op -> minimum bytes
    for batch in plan.batches:
        per = {"bf16": {}}
        for name, (m, k, n) in gemm_shapes(model, batch).items():
            row = measure(bf16_case(name, m, k, n, device.torch_device), "torch", device, plan, batch, 0)
            row.update(precision="bf16")
            _keep(record, writer, row, per["bf16"], name, nbytes, said, say)
            for backend, scaling in variants:
                key = f"fp8-{backend}-{scaling}"
                per.setdefault(key, {})
                shape = fp8.Fp8GemmShape(m, k, n, scaling)
                base = {"op": name, "kind": "fp8_gemm", "batch": batch, "context": 0, "backend": key,
                        "dtype": "fp8", "precision": "fp8", "scaling": scaling, "flops": fp8.flops(shape),
                        "bytes": fp8.min_bytes(shape), "shape": dict(shape.__dict__)}
                s_ok, s_why = fp8.scaling_support(scaling)
                if not ok or not s_ok:
                    skipped[key] = why or s_why
                    _keep(record, writer, {**base, "valid": False, "skipped": why or s_why}, per[key], name,
                          nbytes, said, say)
                    continue
                case = fp8.fp8_case(shape, device.torch_device, backends=(backend,), name=name)
                row = measure(case, backend, device, plan, batch, 0)  # checked at bf16 output tolerance
                row.update(base | {k: row[k] for k in row if k not in base})
                row.update(backend=key, dtype="fp8")
                if row.get("seconds_p50"):  # read against the FP8 peak, not bf16's
                    row.update(roofline.derive(row["flops"], row["bytes"], row["seconds_p50"], "fp8", device.spec,
                                              plan.ceilings.copy_bw))
                _keep(record, writer, row, per[key], name, nbytes, said, say)
        record["steps"].extend(fp8_steps(model, batch, per, economics, skipped, nbytes, device))
        writer.write(record)
    record["complete"] = True
    writer.write(record)
    return said


def _keep(record, writer, row, into: dict, name: str, nbytes: dict, said: set, say) -> None:
    nbytes.setdefault(row["backend"] if row.get("precision") == "fp8" else "bf16", {})[name] = row["bytes"]
    record["rows"].append(row)
    writer.write(record)
    into[name] = row.get("seconds_p50")
    if not row.get("seconds_p50"):
        why = row.get("skipped") or row.get("check")
        if row.get("skipped") and why in said:  # one line per reason, not one per skipped row
            return
        said.add(why)
        say(f"  {name} b={row['batch']} {row['backend']}: {why}"
            + (" (the same for every row it applies to)" if row.get("skipped") else ""))


def fp8_steps(model, batch: int, per: dict, economics, skipped: dict, nbytes: dict, device) -> list:
    """Per precision: the layer's four projections and the LM head as a GEMM-only decode step."""
    out = []
    bf16_step = None
    for key, times in per.items():
        wbytes = model.weight_bytes("fp8" if key != "bf16" else "bf16")
        step = {"batch": batch, "context": 0, "backend": key, "precision": key, "derived": True,
                "bytes_needed": wbytes, "memory_bytes": device.memory_bytes, "fits": wbytes <= device.memory_bytes,
                "derivation": GEMM_STEP_DERIVATION,
                "weight_bytes": model.decode_weight_bytes("fp8" if key != "bf16" else "bf16", batch)}
        missing = [n for n in (*LAYER_GEMMS, *GEMM_MODEL_OPS) if not times.get(n)]
        if key in skipped:
            step.update(valid=False, reason=f"skipped: {skipped[key]}")
            out.append(step)
            continue
        if missing:
            step.update(valid=False, reason=f"no timing for {', '.join(missing)}")
            out.append(step)
            continue
        per_layer, seconds = gemm_step(model.layers, times)
        _, moved = gemm_step(model.layers, nbytes[key])
        step.update(valid=True, gemm_seconds_per_layer=per_layer, step_seconds=seconds, bytes=moved,
                    gbps=moved / seconds / 1e9, tokens_per_s=batch / seconds, tokens_per_s_per_user=1.0 / seconds,
                    **economics(batch / seconds))
        if key == "bf16":
            bf16_step = seconds
        elif bf16_step:
            step["speedup_vs_bf16"] = bf16_step / seconds
        out.append(step)
    return out

"""Time a model's decode projections in FP8 (torch._scaled_mm and the Triton FP8 GEMM; per-tensor and
per-channel scales) beside bf16 on the same shapes, each verified first, and re-derive the GEMM share of
the step and its economics. On devices without FP8 the FP8 rows are skipped with the reason."""
from __future__ import annotations

import json

from bench.derive import roofline
from bench.commands import _scale_common as common
from bench.configs.model_configs import MODELS, get_model
from bench.parsing import positive_int_list
from costmodel.step import compose
from kernels import fp8, gemm
from kernels.dtypes import generator, randn
from kernels.op import OpCase

GPU_DEFAULTS = {"model": "llama-3.1-8b", "batch": "1,8,32,128"}
CPU_DEFAULTS = {"model": "tiny", "batch": "1,8"}
LAYER_GEMMS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")


def add_arguments(p):
    p.add_argument("--model", help=f"one of: {', '.join(MODELS)} (default llama-3.1-8b on GPU, tiny on CPU)")
    p.add_argument("--batch", help="comma list of batch sizes")
    p.add_argument("--scaling", default="tensor,channel", help="comma list of: tensor, channel")
    p.add_argument("--backend", default="torch,triton,triton-w8a16",
                   help="FP8 backends: torch (_scaled_mm), triton (W8A8), triton-w8a16 (FP8 weights, bf16 x)")
    common.add_common_arguments(p)


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


def main(args) -> int:
    from bench.sweeps.decode_sweep import measure

    device, label = common.detect(args)
    d = CPU_DEFAULTS if device.kind == "cpu" else GPU_DEFAULTS
    model = get_model(args.model or d["model"])
    from bench.configs.model_configs import refuse_moe

    refuse_moe(model, "`tokenbench fp8` (its step is the dense layer's GEMMs)")
    batches = positive_int_list(args.batch or d["batch"], "--batch")
    scalings = [s.strip() for s in args.scaling.split(",") if s.strip()]
    for s in scalings:
        if s not in fp8.SCALINGS:
            from bench.errors import UserError

            raise UserError(f"unknown --scaling {s!r}; choose from {', '.join(fp8.SCALINGS)}")
    ok, why = fp8.support(device)
    _SAID.clear()
    # without FP8 nothing FP8 runs, so the CPU's Triton-interpreter condition does not apply
    backends = common.backends_for(args.backend, tuple(fp8.IMPLS), device if ok else None)
    plan = common.plan_for(model, batches, "bf16", ["torch"], args, device)
    writer, record, economics = common.start("fp8", args, device, model, "fp8", {
        "batches": batches, "scalings": scalings, "backends": backends, "budget_s": plan.budget_s,
        "fp8_supported": ok, "fp8_skip_reason": why or None, "fp4_skip_reason": fp4_reason(device)})
    common.measure_ceilings(plan, device, record, writer)
    common.say(f"tokenbench fp8 on {label}: {device.name}; {model.name}; FP8 " +
               ("available" if ok else f"rows skipped: {why}"))
    variants = [(b, s) for b in backends for s in scalings]
    skipped = {}  # precision key -> why its rows were not run
    nbytes = {}  # precision key -> op -> minimum bytes
    for batch in batches:
        per = {"bf16": {}}
        for name, (m, k, n) in gemm_shapes(model, batch).items():
            row = measure(bf16_case(name, m, k, n, device.torch_device), "torch", device, plan, batch, 0)
            row.update(precision="bf16")
            _keep(record, writer, row, per["bf16"], name, nbytes)
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
                    _keep(record, writer, {**base, "valid": False, "skipped": why or s_why}, per[key], name, nbytes)
                    continue
                case = fp8.fp8_case(shape, device.torch_device, backends=(backend,), name=name)
                row = measure(case, backend, device, plan, batch, 0)  # checked at bf16 output tolerance
                row.update(base | {k: row[k] for k in row if k not in base})
                row.update(backend=key, dtype="fp8")
                if row.get("seconds_p50"):  # read against the FP8 peak, not bf16's
                    row.update(roofline.derive(row["flops"], row["bytes"], row["seconds_p50"], "fp8", device.spec,
                                              plan.ceilings.copy_bw))
                _keep(record, writer, row, per[key], name, nbytes)
        record["steps"].extend(_steps(model, batch, per, economics, skipped, nbytes, device))
        writer.write(record)
    record["complete"] = True
    writer.write(record)
    for s in record["steps"]:
        if s.get("valid"):
            common.say(f"  b={s['batch']} {s['precision']}: GEMMs {s['gemm_seconds_per_layer'] * 1e6:.1f} us/layer, "
                       f"GEMM-only step {s['step_seconds'] * 1e3:.3f} ms, {s['tokens_per_s']:.1f} tok/s"
                       + (f", x{s['speedup_vs_bf16']:.2f} vs bf16" if s.get("speedup_vs_bf16") else ""))
        elif s["reason"].removeprefix("skipped: ") not in _SAID:
            common.say(f"  b={s['batch']} {s['precision']}: {s['reason']}")
    common.say(f"wrote {writer.json_path}")
    if args.json:
        from bench.records.store import clean

        print(json.dumps(clean(record), indent=1))
    return 0


def fp4_reason(device) -> str:
    return fp8.fp4_support(device)[1]


def _keep(record, writer, row, into: dict, name: str, nbytes: dict) -> None:
    nbytes.setdefault(row["backend"] if row.get("precision") == "fp8" else "bf16", {})[name] = row["bytes"]
    record["rows"].append(row)
    writer.write(record)
    into[name] = row.get("seconds_p50")
    if not row.get("seconds_p50"):
        why = row.get("skipped") or row.get("check")
        if row.get("skipped") and why in _SAID:  # one line per reason, not one per skipped row
            return
        _SAID.add(why)
        common.say(f"  {name} b={row['batch']} {row['backend']}: {why}"
                   + (" (the same for every row it applies to)" if row.get("skipped") else ""))


_SAID: set = set()


def _steps(model, batch: int, per: dict, economics, skipped: dict, nbytes: dict, device) -> list:
    """Per precision: the layer's four projections and the LM head as a GEMM-only decode step."""
    out = []
    bf16_step = None
    for key, times in per.items():
        wbytes = model.weight_bytes("fp8" if key != "bf16" else "bf16")
        step = {"batch": batch, "context": 0, "backend": key, "precision": key, "derived": True,
                "bytes_needed": wbytes, "memory_bytes": device.memory_bytes, "fits": wbytes <= device.memory_bytes,
                "derivation": "layers x (qkv + o + gate_up + down) + lm_head: GEMMs only, attention and norms "
                              "excluded",
                "weight_bytes": model.decode_weight_bytes("fp8" if key != "bf16" else "bf16", batch)}
        missing = [n for n in (*LAYER_GEMMS, "lm_head") if not times.get(n)]
        if key in skipped:
            step.update(valid=False, reason=f"skipped: {skipped[key]}")
            out.append(step)
            continue
        if missing:
            step.update(valid=False, reason=f"no timing for {', '.join(missing)}")
            out.append(step)
            continue
        per_layer = sum(times[n] for n in LAYER_GEMMS)
        seconds = compose(model.layers, per_layer, times["lm_head"])
        moved = compose(model.layers, sum(nbytes[key][n] for n in LAYER_GEMMS), nbytes[key]["lm_head"])
        step.update(valid=True, gemm_seconds_per_layer=per_layer, step_seconds=seconds, bytes=moved,
                    gbps=moved / seconds / 1e9, tokens_per_s=batch / seconds, tokens_per_s_per_user=1.0 / seconds,
                    **economics(batch / seconds))
        if key == "bf16":
            bf16_step = seconds
        elif bf16_step:
            step["speedup_vs_bf16"] = bf16_step / seconds
        out.append(step)
    return out

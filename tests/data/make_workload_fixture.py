"""Writes tests/data/workload-cpu-llama-3.2-1b-bf16.json: a HAND-MADE workload fixture (not a measurement).

Run from the repository root: PYTHONPATH=. python tests/data/make_workload_fixture.py
"""
import json, math
from costmodel.workload_economics import WorkloadPoint
ISL, OSL, CHUNK = 256, 64, 256
P = 40.0  # prompt tokens/s (prefill), hand-chosen
def d(B): return 0.65 + 0.18 * B   # decode step seconds at batch B, hand-chosen
mem = 25276510208
weights = 2471628800; kvpt = 32768 // 2  # bf16: 16 KiB per token
pts = []
comps = []  # how each point was composed, as the workload command writes it (bench/workload/compose.py)
def r(x, n=6): return float(f"{x:.{n}g}")
for C in (1, 4, 16):
    need = weights + C * (ISL + OSL) * kvpt
    # chunked prefill: each step C decode tokens + C*ISL/OSL prompt tokens
    prompt = C * ISL / OSL
    T = d(C) + prompt / 60.0
    out, inp = C / T, prompt / T
    ttft = ISL / 60.0 + d(C)
    pts.append(WorkloadPoint(device="AMD EPYC", model="llama-3.2-1b", precision="bf16", isl=ISL, osl=OSL, concurrency=C,
        engine_model="chunked-prefill", source="measured", tp=1, total_tokens_per_s=r(out + inp), output_tokens_per_s=r(out),
        input_tokens_per_s=r(inp), interactivity=r(1 / T), ttft_s=r(ttft), e2e_latency_s=r(ttft + (OSL - 1) * T),
        input_time_share=r((prompt / 60.0) / T), fits=True, bytes_needed=need, memory_bytes=mem,
        label="AMD EPYC bf16 256/64 chunked-prefill"))
    comps.append(dict(engine_model="chunked-prefill", concurrency=C, step_seconds=T, decode_only_seconds=d(C),
                      prefill_seconds=ISL / 60.0, affine_deviation=0.0, affine=True, note=""))
for C in (1, 4, 16):
    need = weights + C * (ISL + OSL) * kvpt
    pre = C * ISL / P
    dec = OSL * d(C)
    tot = pre + dec
    pts.append(WorkloadPoint(device="AMD EPYC", model="llama-3.2-1b", precision="bf16", isl=ISL, osl=OSL, concurrency=C,
        engine_model="prefill-then-decode", source="measured", tp=1, total_tokens_per_s=r(C * (ISL + OSL) / tot),
        output_tokens_per_s=r(C * OSL / tot), input_tokens_per_s=r(C * ISL / tot), interactivity=r(1 / d(C)),
        ttft_s=r(pre + d(C)), e2e_latency_s=r(tot), input_time_share=r(pre / tot), fits=True, bytes_needed=need,
        memory_bytes=mem, label="AMD EPYC bf16 256/64 prefill-then-decode"))
    comps.append(dict(engine_model="prefill-then-decode", concurrency=C, step_seconds=d(C), prefill_seconds=pre,
                      decode_seconds=dec, wall_seconds=tot, affine_deviation=0.0, affine=True, note=""))
rec = {"schema_version": 1, "tool": "tokenbench", "kind": "workload", "created": "2026-11-20T10:00:00",
       "run_id": "fixture-workload-cpu-llama-3.2-1b-bf16",
       "device": {"key": None, "name": "AMD EPYC", "kind": "cpu", "memory_bytes": mem, "spec": None, "cores": 2},
       "model": {"name": "llama-3.2-1b", "params": 1235814400, "weight_bytes": weights, "kv_bytes_per_token": kvpt},
       "dtype": "bf16", "workload": {"isl": ISL, "osl": OSL, "concurrency": [1, 4, 16], "chunk": CHUNK, "tp": 1},
       "price": {"price_per_hour": 0.1, "power_kw": 0.25, "source": "--price-per-hour", "power_source": "--power-kw"},
       "rows": [], "steps": [], "points": [p.to_dict() for p in pts], "compositions": comps, "complete": True,
       "note": "HAND-MADE TEST FIXTURE, not a measurement: figures from decode step 0.65 + 0.18 x batch s and prefill 40 tokens/s alone, 60 in a mixed step (tests/data/README.md)"}
json.dump(rec, open("tests/data/workload-cpu-llama-3.2-1b-bf16.json", "w"), indent=1)
for p in pts: print(p.engine_model, p.concurrency, p.total_tokens_per_s, p.output_tokens_per_s, p.interactivity)

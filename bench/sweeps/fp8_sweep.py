"""The FP8 sweep (`tokenbench fp8`), a plan for the measuring engine: a model's decode projections and LM
head timed in bf16 and in FP8 (torch._scaled_mm and the Triton FP8 GEMMs; per-tensor and per-channel scales)
on the same shapes, each verified first, then per precision the GEMM-only decode step
(costmodel.step.gemm_step) and its economics. Without FP8 the FP8 rows are recorded as skipped, with the
reason."""
from __future__ import annotations

from bench.derive import roofline
from bench.records.schema import Fp8Row, Fp8Step
from bench.sweeps.engine import Case, Group
from bench.sweeps.op_sweep_setup import OpSweep
from costmodel.step import GEMM_MODEL_OPS, GEMM_STEP_DERIVATION, LAYER_GEMMS, decode_rates, gemm_step
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


class Fp8Sweep(OpSweep):
    """Every batch of `plan`: each GEMM in bf16, then in FP8 for every (backend, scaling), each row written as
    it is measured, then the batch's GEMM-only steps. `support` is fp8.support(device). A row not timed is
    said once per reason for skipped rows; `said` holds the reasons said."""

    def __init__(self, plan, device, price: dict, out, settings: dict, console, scalings: list, backends: list,
                 support: tuple):
        super().__init__("fp8", plan, device, price, out, settings, console, dtype="fp8")
        self.variants = [(b, sc) for b in backends for sc in scalings]
        self.support = support
        self.said: set = set()
        self.skipped: dict = {}  # precision key -> why its rows were not run

    def total(self) -> int:
        return len(self.plan.batches) * len(gemm_shapes(self.plan.model, 1)) * (1 + len(self.variants))

    def groups(self):
        for batch in self.plan.batches:
            cases = []
            for name, (m, k, n) in gemm_shapes(self.plan.model, batch).items():
                cases.append(self._bf16(name, m, k, n, batch))
                cases += [self._fp8(name, m, k, n, batch, b, sc) for b, sc in self.variants]
            yield Group(f"b={batch}", cases, key=batch)

    def _bf16(self, name: str, m: int, k: int, n: int, batch: int) -> Case:
        from bench.sweeps.decode_sweep import measure

        def run(phase):
            row = measure(bf16_case(name, m, k, n, self.device.torch_device), "torch", self.device, self.plan,
                          batch, 0, Fp8Row)
            row.set(precision="bf16")
            return [row]

        return Case(f"{name} b={batch} bf16", run, line=self._line, line_on_terminal=True)

    def _fp8(self, name: str, m: int, k: int, n: int, batch: int, backend: str, scaling: str) -> Case:
        from bench.sweeps.decode_sweep import measure

        key = f"fp8-{backend}-{scaling}"
        shape = fp8.Fp8GemmShape(m, k, n, scaling)
        base = {"op": name, "kind": "fp8_gemm", "batch": batch, "context": 0, "backend": key, "dtype": "fp8",
                "precision": "fp8", "scaling": scaling, "flops": fp8.flops(shape), "bytes": fp8.min_bytes(shape),
                "shape": dict(shape.__dict__)}

        def run(phase):
            ok, why = self.support
            s_ok, s_why = fp8.scaling_support(scaling)
            if not ok or not s_ok:
                self.skipped[key] = why or s_why
                return [Fp8Row.build(**base, valid=False, skipped=why or s_why)]
            case = fp8.fp8_case(shape, self.device.torch_device, backends=(backend,), name=name)
            timed = measure(case, backend, self.device, self.plan, batch, 0, Fp8Row)  # at bf16 output tolerance
            row = Fp8Row.build(**base)  # the FP8 shape's fields first, then what the measure step found
            row.set(**{k: v for k, v in timed.to_dict().items() if k not in base})
            row.set(backend=key, dtype="fp8")
            if row.seconds_p50:  # read against the FP8 peak, not bf16's
                row.set(**roofline.derive(row.flops, row.bytes, row.seconds_p50, "fp8", self.device.spec,
                                          self.plan.ceilings.copy_bw))
            return [row]

        return Case(f"{name} b={batch} {key}", run, line=self._line, line_on_terminal=True)

    def _line(self, rows: list) -> str | None:
        """A row not timed, said once per reason for skipped rows; nothing for a timed row."""
        row = rows[0]
        if row.seconds_p50:
            return None
        why = row.skipped or row.check
        if row.skipped and why in self.said:  # one line per reason, not one per skipped row
            return None
        self.said.add(why)
        return (f"  {row.op} b={row.batch} {row.backend}: {why}"
                + (" (the same for every row it applies to)" if row.skipped else ""))

    def derive(self, group: Group, rows: list) -> list:
        per, nbytes = {}, {}  # precision key -> op -> seconds (None: not timed), and -> minimum bytes
        for r in rows:
            key = r.backend if r.precision == "fp8" else "bf16"
            per.setdefault(key, {})[r.op] = r.seconds_p50
            nbytes.setdefault(key, {})[r.op] = r.bytes
        return fp8_steps(self.plan.model, group.key, per, self.economics, self.skipped, nbytes, self.device)


def fp8_steps(model, batch: int, per: dict, economics, skipped: dict, nbytes: dict, device) -> list[Fp8Step]:
    """Per precision: the layer's four projections and the LM head as a GEMM-only decode step."""
    out = []
    bf16_step = None
    for key, times in per.items():
        wbytes = model.weight_bytes("fp8" if key != "bf16" else "bf16")
        step = Fp8Step.build(batch=batch, context=0, backend=key, precision=key, derived=True,
                             bytes_needed=wbytes, memory_bytes=device.memory_bytes, fits=wbytes <= device.memory_bytes,
                             derivation=GEMM_STEP_DERIVATION,
                             weight_bytes=model.decode_weight_bytes("fp8" if key != "bf16" else "bf16", batch))
        missing = [n for n in (*LAYER_GEMMS, *GEMM_MODEL_OPS) if not times.get(n)]
        if key in skipped:
            step.set(valid=False, reason=f"skipped: {skipped[key]}")
            out.append(step)
            continue
        if missing:
            step.set(valid=False, reason=f"no timing for {', '.join(missing)}")
            out.append(step)
            continue
        per_layer, seconds = gemm_step(model.layers, times)
        _, moved = gemm_step(model.layers, nbytes[key])
        rates = decode_rates(batch, seconds)
        step.set(valid=True, gemm_seconds_per_layer=per_layer, step_seconds=seconds, bytes=moved,
                 gbps=moved / seconds / 1e9, **rates, **economics(rates["tokens_per_s"]))
        if key == "bf16":
            bf16_step = seconds
        elif bf16_step:
            step.set(speedup_vs_bf16=bf16_step / seconds)
        out.append(step)
    return out

"""The MoE sweep (`tokenbench moe`), a plan for the measuring engine: a mixture-of-experts model's MoE MLP block (its own router, routed experts
with their biases and activation, shared experts: kernels/moe_block.py) at each token count, timed per
routing distribution and backend after its float64 check, with what each timed input set's routing really
activated (distinct experts, the heaviest expert's tokens), beside the router alone; then per routing and
backend the step of the MoE layers' MLPs (costmodel.step.moe_step).

`weights` other than "activation" stores the experts as FP8 with 128x128 block scales or MXFP4
(kernels/moe_lowprec.py): that op is the Mixtral-style MoE MLP (softmax top-k router on random inputs, no
expert biases), timed per backend at each batch; bytes count the stored weights and scales, FP8 rows are read
against the FP8 peak, and the steps' resident weights shrink with the experts.

A model's own block (router, expert biases, activation) is its MoE layers' MlpSpec (kernels/layer_spec.py), read
from its config.json by bench/configs/hf_config.py."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from bench.derive import roofline
from bench.records.schema import MoeRow, MoeStep
from bench.sweeps.engine import Case, Group
from bench.sweeps.op_sweep_setup import OpSweep
from costmodel.step import MOE_STEP_DERIVATION, decode_rates, moe_step
from kernels import moe, moe_block, moe_lowprec, moe_router
from kernels.dtypes import torch_dtype
from kernels.moe_router import RouterSpec
from kernels.moe_routing import Routing


@dataclass(frozen=True)
class BlockKind:
    """What a model's MoE block adds to its shape: router, expert biases, activation (MlpSpec's names)."""

    router: RouterSpec
    expert_bias: bool = False
    activation: str = "swiglu"
    limit: float = 0.0
    source: str = ""


def own_block(model) -> BlockKind | None:
    """The block kind the model's MoE layers hold (every MoE layer of the architectures read has the same MLP), or
    None for a model without an MoE layer."""
    mlp = next((layer.mlp for layer, _ in model.spec.groups if layer.mlp.kind == "moe"), None)
    if mlp is None:
        return None
    if mlp.activation == "gptoss_swiglu" and mlp.swiglu_alpha != moe_block.GPTOSS_ALPHA:
        raise ValueError(f"{model.name}: swiglu_alpha {mlp.swiglu_alpha} is not measured (the block's is "
                         f"{moe_block.GPTOSS_ALPHA})")
    if mlp.router == "deepseek_group_sigmoid":
        router = RouterSpec(mlp.router, mlp.norm_topk_prob, mlp.n_group, mlp.topk_group, mlp.routed_scaling_factor)
    elif mlp.router == "gptoss":
        router = RouterSpec("gptoss")
    else:
        router = RouterSpec(mlp.router, mlp.norm_topk_prob)
    return BlockKind(router, expert_bias=mlp.expert_bias, activation=mlp.activation,
                     limit=mlp.swiglu_limit if mlp.activation == "gptoss_swiglu" else 0.0,
                     source=f"{model.source}: {mlp.label}, router {mlp.router}")


def block_kind(model, router: str | None) -> BlockKind:
    """The model's block kind, or `router` (a kind of kernels.moe_router) in its place: softmax_topk and gptoss
    need no settings; deepseek_group_sigmoid takes its groups from the model's own entry, so only there.
    ValueError with the reason where neither says."""
    own = own_block(model)
    if router is None:
        if own is None:
            raise ValueError(f"{model.name}: which router it uses is not known here; give --router")
        return own
    keep = own or BlockKind(RouterSpec())
    if router == "softmax_topk":
        return replace(keep, router=RouterSpec(), source="--router softmax_topk")
    if router == "gptoss":
        return replace(keep, router=RouterSpec("gptoss"), source="--router gptoss")
    if router == "deepseek_group_sigmoid":
        if own is None or own.router.kind != router:
            raise ValueError(f"--router deepseek_group_sigmoid needs n_group and topk_group, which {model.name}'s "
                             "config does not give")
        return own
    raise ValueError(f"unknown router {router!r}")


def block_shape(model, tokens: int, kind: BlockKind) -> moe_block.MoeBlockShape:
    return moe_block.MoeBlockShape(tokens=tokens, hidden=model.hidden, ffn=model.moe_ffn, experts=model.experts,
                                   top_k=model.experts_per_token, router=kind.router, shared=model.shared_experts,
                                   expert_bias=kind.expert_bias, activation=kind.activation, limit=kind.limit)


def expected_active_uniform(s: moe_block.MoeBlockShape) -> float:
    """Distinct experts T tokens' uniform top-k draws touch in expectation: a token misses an expert with
    probability 1 - k/E (k distinct of E)."""
    return s.experts * (1.0 - (1.0 - s.top_k / s.experts) ** s.tokens)


class MoeSweep(OpSweep):
    """Every token count of `plan`: per routing the router alone (one row per router backend, beside the block's
    rows: the block's time includes it), then the block per backend, then per routing and backend the MoE
    step. Low-precision experts (`weights`) time the MoE op of kernels/moe_lowprec.py per backend instead
    (`kind` and `routings` unused there). `row_line(row)` is the line a measured row prints."""

    def __init__(self, plan, device, price: dict, out, settings: dict, console, row_line: Callable,
                 kind: BlockKind | None, routings: list[Routing], weights: str = "activation"):
        super().__init__("moe", plan, device, price, out, settings, console)
        self.row_line, self.block, self.routings, self.weights = row_line, kind, routings, weights

    def total(self) -> int:
        per_batch = len(self.plan.backends)
        if self.weights == "activation":
            per_batch = len(self.routings) * (len(router_backends(self.plan.backends)) + len(self.plan.backends))
        return len(self.plan.batches) * per_batch

    def _row_case(self, label: str, run) -> Case:
        return Case(label, lambda phase: [run()], line=lambda rows: self.row_line(rows[0]), line_on_terminal=True)

    def groups(self):
        plan, device, backends = self.plan, self.device, self.plan.backends
        tdt = torch_dtype(plan.dtype)
        for batch in plan.batches:
            cases = []
            if self.weights != "activation":
                shape = plan.model.moe_shape(batch)
                case = _case(shape, self.weights, plan.dtype, device, backends)
                cases = [self._row_case(f"moe b={batch} {b}", lambda b=b: self._lowprec_row(case, shape, b, batch))
                         for b in backends]
                yield Group(f"moe b={batch}", cases, key=batch)
                continue
            shape = block_shape(plan.model, batch, self.block)
            for routing in self.routings:
                router = moe_router.router_case(shape.router_shape, tdt, device.torch_device,
                                                router_backends(backends), routing)
                cases += [self._row_case(f"router T={batch} {routing.label} {b}",
                                     lambda b=b, router=router, routing=routing: self._router_row(router, shape, routing, b))
                          for b in router_backends(backends)]
                block = moe_block.moe_block_case(shape, tdt, device.torch_device, backends, routing)
                cases += [self._row_case(f"moe_block T={batch} {routing.label} {b}",
                                     lambda b=b, block=block, routing=routing: self._block_row(block, shape, routing, b))
                          for b in backends]
            yield Group(f"T={batch}", cases, key=batch)

    def _router_row(self, case, shape, routing: Routing, backend: str) -> MoeRow:
        from bench.sweeps.decode_sweep import measure

        row = measure(case, backend, self.device, self.plan, shape.tokens, 0, MoeRow)
        row.set(routing=routing.label, router=shape.router.kind)
        return row

    def _block_row(self, case, shape, routing: Routing, backend: str) -> MoeRow:
        from bench.sweeps.decode_sweep import measure

        plan, device, tdt = self.plan, self.device, torch_dtype(self.plan.dtype)
        # the loop baseline reads its per-expert token counts on the host: no CUDA graph can hold it
        row = measure(case, backend, device, replace(plan, cuda_graph=False) if backend == "torch" else plan,
                      shape.tokens, 0, MoeRow)
        # the routing of every input set the timer rotated through (seeds 0..n-1, as time_case draws them)
        per_set = [moe_block.step_routing(shape, moe_block.routing_inputs(shape, tdt, device.torch_device, seed,
                                                                          routing))
                   for seed in range(row.rotation_sets or 1)]
        active = sum(p.active_experts for p in per_set) / len(per_set)
        row.set(routing=routing.label, router=self.block.router.kind,
                expected_active_experts=expected_active_uniform(shape) if routing.kind == "uniform" else None,
                active_experts_measured=active, active_experts_per_set=[p.active_experts for p in per_set],
                max_tokens_per_expert=sum(p.max_tokens_per_expert for p in per_set) / len(per_set),
                max_tokens_per_expert_per_set=[p.max_tokens_per_expert for p in per_set],
                active_experts_note="distinct routed experts each timed input set's router chose, and "
                                    "the most tokens one expert got; bytes_actual uses the mean active",
                bytes_actual=moe_block.min_bytes(shape, tdt.itemsize, active), expert_weights="activation")
        if row.seconds_p50:
            row.set(gbps_actual=row.bytes_actual / row.seconds_p50 / 1e9,
                    moe_seconds_all_layers=moe_step(plan.model.moe_layers, row.seconds_p50))
        return row

    def _lowprec_row(self, case, shape, backend: str, batch: int) -> MoeRow:
        from bench.sweeps.decode_sweep import measure

        plan, device, weights = self.plan, self.device, self.weights
        dtype = torch_dtype(plan.dtype)
        # the loop baselines read their per-expert token counts on the host: no CUDA graph can hold them
        looped = backend in ("torch", "torch-dequant")
        row = measure(case, backend, device, replace(plan, cuda_graph=False) if looped else plan, batch, 0, MoeRow)
        # the routing of every input set the timer rotated through (seeds 0..n-1, as time_case draws them)
        per_set = [moe.active_experts(moe.routing_inputs(shape, dtype, device.torch_device, seed))
                   for seed in range(row.rotation_sets or 1)]
        active = sum(per_set) / len(per_set)
        row.set(expected_active_experts=moe.expected_active_experts(shape), active_experts_measured=active,
                active_experts_per_set=per_set,
                active_experts_note="distinct routed experts each timed input set activated; bytes_actual "
                                    "uses their mean",
                bytes_actual=_bytes_at(shape, weights, dtype.itemsize, active), expert_weights=weights)
        if row.seconds_p50 and weights == "fp8-block":  # FP8 math: read against the FP8 peak
            row.set(**roofline.derive(row.flops, row.bytes, row.seconds_p50, "fp8", device.spec,
                                      plan.ceilings.copy_bw))
        if row.seconds_p50:
            row.set(gbps_actual=row.bytes_actual / row.seconds_p50 / 1e9,
                    moe_seconds_all_layers=moe_step(plan.model.moe_layers, row.seconds_p50))
        return row

    def derive(self, group: Group, rows: list) -> list:
        blocks = [r for r in rows if r.op != "router"]  # the router rows stand beside the block's; no step
        return moe_steps(self.plan.model, self.plan.dtype, group.key, blocks, self.device, self.weights)


def router_backends(block_backends) -> list:
    """The router's backends for the block's: triton's fused selection for triton, torch for the others."""
    out = []
    for b in block_backends:
        r = "triton" if b == "triton" else "torch"
        if r not in out:
            out.append(r)
    return out


def _case(shape, weights: str, dtype: str, device, backends):
    if weights == "activation":
        return moe.moe_case(shape, torch_dtype(dtype), device.torch_device, backends)
    return moe_lowprec.moe_case(shape, weights, torch_dtype(dtype), device.torch_device, backends)


def _bytes_at(shape, weights: str, eb: int, active: float) -> int:
    if weights == "activation":
        return moe.min_bytes(shape, eb, active=active)
    return moe_lowprec.min_bytes(shape, weights, eb, active=active)


def expert_format_saving(model, dtype: str, weights: str, experts: float) -> int:
    """Bytes `experts` experts of every MoE layer take in the activation dtype less what they take stored
    in `weights` (0 for "activation")."""
    if weights == "activation":
        return 0
    shape = model.moe_shape(1)
    as_stored = moe_lowprec.expert_bytes(shape, weights)
    return round(model.moe_layers * experts * (3 * model.hidden * model.moe_ffn * torch_dtype(dtype).itemsize
                                               - as_stored))


def moe_steps(model, dtype: str, batch: int, rows: list, device, weights: str = "activation") -> list[MoeStep]:
    """Per routing and backend: the model's MoE MLPs over one step (moe_layers x the MoE block, or the
    low-precision MoE op). Attention and the dense layers are not in it (`tokenbench run` measures them), so
    no cost per token is derived from it. With low-precision experts the rest of the model stays in `dtype`."""
    # every expert stays resident, active or not
    needed = model.weight_bytes(dtype) - expert_format_saving(model, dtype, weights,
                                                              model.experts + model.shared_experts)
    expected = model.expected_active_experts(batch) + model.shared_experts
    out = []
    for r in rows:
        step = MoeStep.build(batch=batch, context=0, backend=r.backend, dtype=dtype, derived=True,
                             derivation=MOE_STEP_DERIVATION, moe_layers=model.moe_layers,
                             expected_active_experts=r.expected_active_experts,
                             active_experts_measured=r.active_experts_measured, routing=r.routing, router=r.router,
                             max_tokens_per_expert=r.max_tokens_per_expert, expert_weights=weights,
                             decode_weight_bytes_expected=model.decode_weight_bytes(dtype, batch)
                             - expert_format_saving(model, dtype, weights, expected),
                             bytes_needed=needed, memory_bytes=device.memory_bytes,
                             fits=needed <= device.memory_bytes, cost_per_mtok=None, tokens_per_s_per_mw=None)
        if not r.seconds_p50:
            step.set(valid=False, reason=r.skipped or r.check)
        else:
            seconds = moe_step(model.moe_layers, r.seconds_p50)
            step.set(valid=True, step_seconds=seconds, **decode_rates(batch, seconds),
                     gbps=moe_step(model.moe_layers, r.bytes) / seconds / 1e9, pct_copy_bw=r.pct_copy_bw)
        out.append(step)
    return out

"""A stored workload record composed again under an engine policy (torch-free: the steps it measured, no
new measurement), and that composition's error beside a real engine's served figures, with the record's
points as written (the model it was composed with then) for the before.

Served figures file (JSON): {"what": how they were measured, "source": where, "isl", "osl", "points":
[{"concurrency", "total_tokens_per_s", "tokens_per_s_per_user", "median_ttft_s"}, ...]}.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bench.errors import UserError
from bench.records.schema import WorkloadRecord
from bench.workload import compose as comp
from bench.workload import queueing
from bench.workload.projection import measured_steps
from costmodel.workload_economics import WorkloadPoint


@dataclass(frozen=True)
class ServedPoint:
    concurrency: int
    total_tokens_per_s: float
    tokens_per_s_per_user: float
    median_ttft_s: float


@dataclass(frozen=True)
class ServedFigures:
    what: str
    source: str
    isl: int
    osl: int
    points: tuple


@dataclass(frozen=True)
class Gap:
    """One concurrency: the served figures, the record's chunked point as written, and the recomposed one."""

    concurrency: int
    served: ServedPoint
    before: WorkloadPoint | None
    after: WorkloadPoint | None


def read_served(path: str) -> ServedFigures:
    """A served figures file; every missing or wrong field is one UserError naming it."""
    where = f"served figures file {path}"
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{where}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("points"), list) or not data["points"]:
        raise UserError(f"{where}: needs an object with a non-empty list `points`")
    points = []
    for i, p in enumerate(data["points"]):
        try:
            c = p["concurrency"]
            figures = [float(p[k]) for k in ("total_tokens_per_s", "tokens_per_s_per_user", "median_ttft_s")]
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{where}: points[{i}]: missing or not a number: {exc}") from None
        if isinstance(c, bool) or not isinstance(c, int) or c < 1 or min(figures) <= 0:
            raise UserError(f"{where}: points[{i}]: concurrency must be a positive integer and figures positive")
        points.append(ServedPoint(c, *figures))
    for name in ("isl", "osl"):
        if isinstance(data.get(name), bool) or not isinstance(data.get(name), int):
            raise UserError(f"{where}: `{name}` must be an integer")
    return ServedFigures(str(data.get("what", "")), str(data.get("source", "")), data["isl"], data["osl"],
                         tuple(points))


def recompose(record: WorkloadRecord, policy_name: str, chunk: int | None = None) -> tuple[list, int]:
    """The record's chunked-prefill points composed again under the policy (its budget on the record's device
    unless `chunk` is given), and the budget used. A budget that asks for a step the record did not measure
    leaves that point empty with the reason, as compose does."""
    from bench.workload.plan import make_spec

    policy = queueing.policy(policy_name)
    w, dev = record.workload, record.device
    budget = chunk or policy.budget(dev.kind, dev.memory_bytes, dev.name or "", w["chunk"])
    spec = make_spec(w["isl"], w["osl"], list(w["concurrency"]), budget, policy.name)
    model = record.model
    h = comp.Header(device=dev.key or dev.name, model=model["name"], precision=record.dtype,
                    memory_bytes=None if dev.memory_bytes is None else int(dev.memory_bytes), weight_bytes=model["weight_bytes"],
                    kv_bytes_per_token=model["kv_bytes_per_token"], tp=w.get("tp", 1))
    steps = measured_steps(record)
    return [comp.chunked_point(h, spec, c, steps) for c in spec.concurrency], spec.chunk


def gaps(record: WorkloadRecord, served: ServedFigures, after: list) -> list[Gap]:
    """Per served concurrency: the record's chunked point as written and the recomposed one."""
    w = record.workload
    if (served.isl, served.osl) != (w["isl"], w["osl"]):
        raise UserError(f"the served figures are for ISL {served.isl} / OSL {served.osl}, the workload record for "
                        f"ISL {w['isl']} / OSL {w['osl']}: not the same workload")
    before = {p.concurrency: p for p in record.workload_points if p.engine_model == "chunked-prefill"}
    new = {p.concurrency: p for p, _ in after}
    return [Gap(s.concurrency, s, before.get(s.concurrency), new.get(s.concurrency)) for s in served.points]

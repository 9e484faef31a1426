"""What flows through the pipeline, as typed records: a measured row, a derived step, a price and power
quote, the device a run measured, and the record of a run of each kind tokenbench writes (run, peak, tp,
moe, fp8). bench/records/store.py reads and writes them; nothing here touches torch or the disk.

Every record is a dataclass read from a file's dict by `from_dict` and written back by `to_dict`:
- a field of the wrong type is one line naming the file, the row and the field, never a traceback;
- a field that is None is left out of the dict (a figure this kind or row does not have), unless the
  dict it was read from, or the writer, gave it as null (an unknown figure): that null is written back;
- keys a dataclass does not declare are kept in `extra` and written back, so nothing is silently lost.
A new kind is one dataclass (its rows and steps may be new dataclasses too) and one entry in
store.KINDS.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

from bench.errors import UserError
from costmodel.ceilings import Ceilings, DeviceSpec, positive

SCHEMA_VERSION = 2

# The dtypes a record can be labelled with (bench/configs/device_catalog.py DTYPES; kept here so the schema
# imports no configuration): a dtype outside them is a hand-edited or corrupt file, never a new precision.
RECORD_DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "fp4")
# model config fields that are counts or sizes (positive where given) and those that may be 0 (a dense model)
MODEL_POSITIVE = ("hidden", "layers", "heads", "kv_heads", "ffn", "vocab", "head_dim", "params", "weight_bytes",
                  "kv_bytes_per_token", "rope_theta", "norm_eps")
MODEL_COUNTS = ("experts", "experts_per_token", "moe_ffn", "shared_experts", "dense_layers")

# The JSON type each annotation's base type needs; a None value is always accepted (an unknown figure).
_WANT = {"float": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
         "int": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
         "str": ("a string", lambda v: isinstance(v, str)),
         "bool": ("true or false", lambda v: isinstance(v, bool)),
         "dict": ("an object", lambda v: isinstance(v, dict)),
         "list": ("a list", lambda v: isinstance(v, list))}


def bad(where: str, name: str, want: str, value) -> UserError:
    return UserError(f"{where}: {name} must be {want}, got {value!r} (a hand-edited or corrupt file?)")


def _base_type(annotation: str) -> str:
    return annotation.split("|")[0].strip()


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_value(where: str, name: str, value, *, positive: bool = False, non_negative: bool = False) -> None:
    """A number read from a file is finite (JSON readers take NaN and Infinity), and positive or non-negative
    where the figure can be nothing else (a time, a rate, a size); else one UserError naming the field."""
    if not _is_number(value):
        return
    if not math.isfinite(value):
        raise bad(where, name, "a finite number", value)
    if positive and value <= 0:
        raise bad(where, name, "a positive number", value)
    if non_negative and value < 0:
        raise bad(where, name, "a non-negative number", value)


def check_dtype(where: str, name: str, value) -> None:
    if value is not None and value not in RECORD_DTYPES:
        raise bad(where, name, f"one of {', '.join(RECORD_DTYPES)}", value)


def check_model(where: str, model: dict) -> None:
    """A record's model config: a name, and counts and sizes that are numbers of the right sign (a
    mistyped `hidden: "big"` is one line, not a traceback in a later formula)."""
    if not isinstance(model.get("name"), str):
        raise bad(where, "model.name", "a string", model.get("name"))
    for key in MODEL_POSITIVE + MODEL_COUNTS:
        value = model.get(key)
        if value is None:
            continue
        if not _is_number(value):
            raise bad(where, f"model.{key}", "a number", value)
        check_value(where, f"model.{key}", value, positive=key in MODEL_POSITIVE, non_negative=True)


@dataclass(kw_only=True)
class Entry:
    """A dict in a results file with declared fields; subclasses list what they must have in REQUIRED and
    how a nested field is read in `nested()` (name -> callable(value, where))."""

    REQUIRED: ClassVar[tuple] = ()
    LEADING: ClassVar[tuple] = ()  # fields written first (what names the entry), the rest in declaration order
    # value rules on the declared numbers: every one finite; POSITIVE ones > 0 where given; with NON_NEGATIVE
    # every number but the SIGNED ones >= 0 (times, rates, sizes, shares)
    POSITIVE: ClassVar[tuple] = ()
    NON_NEGATIVE: ClassVar[bool] = False
    SIGNED: ClassVar[tuple] = ()
    extra: dict = field(default_factory=dict)
    # declared fields the dict gave as null: written back as null (an unknown figure is said, not dropped)
    nulls: frozenset = field(default=frozenset(), compare=False, repr=False, metadata={"transient": True})

    @classmethod
    def nested(cls) -> dict:
        return {}

    @classmethod
    def from_dict(cls, d, where: str):
        if not isinstance(d, dict):
            raise UserError(f"{where} must be an object, got {type(d).__name__}")
        missing = [k for k in cls.REQUIRED if d.get(k) is None]
        if missing:
            raise UserError(f"{where}: lacks {', '.join(missing)}")
        fields = {f.name: f for f in dataclasses.fields(cls)
                  if f.name != "extra" and not f.metadata.get("transient")}  # a file's "path" key is extra
        nested = cls.nested()
        known, extra, nulls = {}, {}, set()
        for key, value in d.items():
            f = fields.get(key)
            if f is None:
                extra[key] = value
                continue
            if value is None:
                nulls.add(key)
            if key in nested and value is not None:
                known[key] = nested[key](value, f"{where}: {key}")
                continue
            want = _WANT.get(_base_type(f.type))
            if value is not None and want is not None and not want[1](value):
                raise bad(where, key, want[0], value)
            if _base_type(f.type) in ("float", "int"):
                check_value(where, key, value, positive=key in cls.POSITIVE,
                            non_negative=cls.NON_NEGATIVE and key not in cls.SIGNED)
            known[key] = value
        entry = cls(**known, extra=extra, nulls=frozenset(nulls))
        entry.check_values(where)
        return entry

    def check_values(self, where: str) -> None:
        """Rules across fields (a step's time beside its rate); a subclass raises one UserError naming the
        field. The per-field rules are POSITIVE / NON_NEGATIVE."""

    @classmethod
    def _declared(cls) -> set:
        return {f.name for f in dataclasses.fields(cls) if f.name != "extra" and not f.metadata.get("transient")}

    @classmethod
    def build(cls, **fields):
        """An entry made by the pipeline (not read from a file): a field given as None is an unknown figure,
        written as null; keys it does not declare are kept in `extra`, as from_dict keeps them."""
        declared = cls._declared()
        known = {k: v for k, v in fields.items() if k in declared}
        extra = {k: v for k, v in fields.items() if k not in declared}
        return cls(**known, extra=extra, nulls=frozenset(k for k, v in known.items() if v is None))

    def set(self, **fields) -> None:
        """Set fields as `build` does (None: written as null; an undeclared key: into `extra`)."""
        declared = self._declared()
        nulls = set(self.nulls)
        for key, value in fields.items():
            if key not in declared:
                self.extra[key] = value
                continue
            setattr(self, key, value)
            if value is None:
                nulls.add(key)
            else:
                nulls.discard(key)
        self.nulls = frozenset(nulls)

    def to_dict(self) -> dict:
        out = {}
        order = {name: i for i, name in enumerate(self.LEADING)}
        for f in sorted(dataclasses.fields(self), key=lambda f: order.get(f.name, len(order))):
            if f.name == "extra" or f.metadata.get("transient"):
                continue
            value = getattr(self, f.name)
            if value is None and f.name not in self.REQUIRED and f.name not in self.nulls:
                continue
            out[f.name] = _plain(value)
        out.update(self.extra)
        return out


def _plain(value):
    if isinstance(value, Entry):
        return value.to_dict()
    if isinstance(value, Ceilings):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _list_of(cls):
    def read(value, where: str) -> list:
        if not isinstance(value, list):
            raise UserError(f"{where} must be a list, got {type(value).__name__}")
        return [cls.from_dict(v, f"{where}[{i}]") for i, v in enumerate(value)]

    return read


def _ceilings(value, where: str) -> Ceilings:
    if not isinstance(value, dict):
        raise UserError(f"{where} must be an object, got {type(value).__name__}")
    for key in ("spec_tflops", "spec_gbps", "measured_tflops", "measured_gbps"):
        v = value.get(key)
        if v is not None and not _WANT["float"][1](v):
            raise bad(where, key, "a number", v)
        check_value(where, key, v, positive=True)
    return Ceilings(dtype=value.get("dtype"), spec_tflops=positive(value.get("spec_tflops")),
                    spec_gbps=positive(value.get("spec_gbps")), measured_tflops=positive(value.get("measured_tflops")),
                    measured_gbps=positive(value.get("measured_gbps")))


# --- rows and steps ------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class Timing(Entry):
    """The timing fields of a measured row (bench.measure.timing's summary plus the timer's set-up)."""

    NON_NEGATIVE: ClassVar[bool] = True
    POSITIVE: ClassVar[tuple] = ("seconds_p10", "seconds_p50", "seconds_p90")

    seconds_p10: float | None = None
    seconds_p50: float | None = None
    seconds_p90: float | None = None
    samples: int | None = None
    noise: float | None = None  # IQR / median
    noisy: bool | None = None
    warmup_s: float | None = None
    cache_flushed: bool | None = None
    calls_per_sample: int | None = None
    levels: int | None = None
    timer: str | None = None
    rotation_sets: int | None = None
    set_bytes: int | None = None
    unreliable: str | None = None


@dataclass(kw_only=True)
class Derived(Entry):
    """Figures derived from a measured time and the declared work (bench.derive.roofline.derive)."""

    NON_NEGATIVE: ClassVar[bool] = True

    tflops: float | None = None
    gbps: float | None = None
    intensity: float | None = None
    bound: str | None = None
    pct_copy_bw: float | None = None
    pct_spec_bw: float | None = None
    pct_spec_flops: float | None = None
    pct_measured_flops: float | None = None
    roofline_seconds_spec: float | None = None
    efficiency_spec: float | None = None
    roofline_seconds_measured: float | None = None
    efficiency_measured: float | None = None


@dataclass(kw_only=True)
class MeasuredRow(Timing, Derived):
    """One op (or the layer, or the whole model) at one batch, context and backend: checked, then timed."""

    REQUIRED: ClassVar[tuple] = ("op", "batch", "backend")
    LEADING: ClassVar[tuple] = ("op", "kind", "batch", "context", "backend", "dtype", "flops", "bytes", "shape")
    POSITIVE: ClassVar[tuple] = ("seconds_p10", "seconds_p50", "seconds_p90", "batch")
    op: str
    kind: str | None = None
    batch: int
    context: int | None = None
    backend: str
    dtype: str | None = None
    phase: str | None = None  # prefill and mixed rows; a decode row has none
    flops: float | None = None
    bytes: float | None = None
    shape: dict | None = None
    # the correctness gate (bench.measure.gate)
    valid: bool | None = None
    check: str | None = None
    rel_error: float | None = None
    tolerance: float | None = None
    skipped: str | None = None
    # prefill / mixed positions
    prompt: int | None = None
    chunk: int | None = None
    prefix: int | None = None
    chunk_index: int | None = None
    chunk_tokens: int | None = None
    rows: int | None = None
    # the board's energy (bench.measure.energy; GPU rows)
    board_joules_per_call: float | None = None
    board_watts: float | None = None
    board_energy_window_s: float | None = None
    board_energy_calls: int | None = None
    board_energy_note: str | None = None
    cpu_gemm_path: str | None = None

    def check_values(self, where: str) -> None:
        check_dtype(where, "dtype", self.dtype)


@dataclass(kw_only=True)
class Step(Derived):
    """The model's step composed from measured rows (decode, prefill or mixed), with tokens/s and money."""

    REQUIRED: ClassVar[tuple] = ("batch", "backend")
    LEADING: ClassVar[tuple] = ("phase", "batch", "context", "backend", "dtype")
    POSITIVE: ClassVar[tuple] = ("batch", "layers", "step_seconds", "layer_seconds", "measured_step_seconds",
                                 "tokens_per_s", "tokens_per_s_per_user", "prompt_tokens_per_s",
                                 "total_tokens_per_s", "time_to_first_token_s")
    # a decode step's tokens/s is batch / step time: a step written otherwise was edited by hand
    RATE_OF_STEP: ClassVar[bool] = True
    batch: int
    context: int | None = None
    backend: str
    dtype: str | None = None
    phase: str | None = None
    valid: bool | None = None
    reason: str | None = None
    derived: bool | None = None
    derivation: str | None = None
    layers: int | None = None
    flops: float | None = None
    bytes: float | None = None
    fits: bool | None = None
    bytes_needed: float | None = None
    memory_bytes: float | None = None
    step_seconds: float | None = None
    layer_seconds: float | None = None
    measured_step_seconds: float | None = None
    derived_over_measured: float | None = None
    tokens_per_s: float | None = None
    tokens_per_s_per_user: float | None = None
    prompt_tokens_per_s: float | None = None
    total_tokens_per_s: float | None = None
    time_to_first_token_s: float | None = None
    prompt: int | None = None
    chunk: int | None = None
    chunks: int | None = None
    prefix: int | None = None
    board_joules_per_token: float | None = None
    cost_per_mtok: float | None = None
    tokens_per_s_per_mw: float | None = None
    cost_note: str | None = None

    def check_values(self, where: str) -> None:
        check_dtype(where, "dtype", self.dtype)
        if not self.RATE_OF_STEP or self.phase not in (None, "decode"):
            return
        if self.step_seconds and self.tokens_per_s:
            implied = self.batch / self.step_seconds
            if abs(self.tokens_per_s / implied - 1.0) > 0.01:
                raise UserError(f"{where}: tokens_per_s {self.tokens_per_s!r} disagrees with batch / step_seconds "
                                f"= {implied:.6g} (a hand-edited or corrupt file?)")
        elif self.tokens_per_s and self.step_seconds is None and "step_seconds" not in self.nulls:
            return
        elif self.tokens_per_s and not self.step_seconds:
            raise UserError(f"{where}: tokens_per_s {self.tokens_per_s!r} without a step time "
                            "(a hand-edited or corrupt file?)")

    @property
    def usable(self) -> bool:
        """An operating point: valid, timed, and fitting in the device's memory."""
        return bool(self.tokens_per_s) and self.fits is not False and self.valid is not False


@dataclass(kw_only=True)
class Price(Entry):
    """A run's price and power quote: $/device-hour and all-in kW, each with its source; `hint` says what
    to pass where one is missing."""

    POSITIVE: ClassVar[tuple] = ("price_per_hour", "power_kw")
    price_per_hour: float | None = None
    source: str | None = None
    power_kw: float | None = None
    power_source: str | None = None
    hint: str | None = None

    @property
    def sources(self) -> str:
        """Where the price and the power came from, as one phrase."""
        return ", ".join(x for x in (self.source, self.power_source) if x) or "none recorded"


@dataclass(kw_only=True)
class DeviceRecord(Entry):
    """The device as a run recorded it: catalog key (None when not in the catalog), name, kind, memory,
    and the spec-sheet entry it matched."""

    REQUIRED: ClassVar[tuple] = ("name",)
    POSITIVE: ClassVar[tuple] = ("memory_bytes",)
    key: str | None = None
    name: str
    kind: str | None = None  # cuda | cpu
    memory_bytes: float | None = None
    spec: dict | None = None

    @property
    def spec_sheet(self) -> DeviceSpec | None:
        return None if not self.spec else DeviceSpec.from_dict(self.spec)

    @property
    def tdp_w(self) -> float | None:
        """The board's TDP from the spec-sheet entry, None for a device not in the catalog."""
        return (self.spec or {}).get("tdp_w")

    @property
    def label(self) -> str:
        """How tables and legends name it: the catalog key (h200), else its name."""
        return self.key or self.name or "unknown device"

    @property
    def display_name(self) -> str:
        """Its name as detected (NVIDIA H200, AMD EPYC ...), else the catalog key."""
        return self.name or self.key or "unknown device"

    @property
    def described(self) -> str:
        """Name and kind, as captions say it: "NVIDIA H200 (cuda)"."""
        return f"{self.display_name} ({self.kind or '?'})"

    @property
    def identity(self) -> str:
        """What makes two records 'the same device': the catalog key, else name and kind."""
        return self.key or self.described

    @property
    def is_cpu(self) -> bool:
        return self.kind == "cpu"


# --- record kinds --------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class Header(Entry):
    """What heads every record: schema, kind, when, which machine and software, with which settings, and
    how the run ended."""

    REQUIRED: ClassVar[tuple] = ("schema_version", "kind", "device")
    POSITIVE: ClassVar[tuple] = ("wall_s",)
    KIND: ClassVar[str] = ""
    schema_version: int = SCHEMA_VERSION
    kind: str = ""
    tool: str = "tokenbench"
    created: str | None = None
    run_id: str | None = None
    device: DeviceRecord
    env: dict | None = None
    settings: dict | None = None
    complete: bool | None = None
    interrupted: str | None = None
    failed: str | None = None
    wall_s: float | None = None
    # CPU time other processes used during the run (bench/records/machine_share.py); records before it have none
    other_cpu: dict | None = None
    shared_machine_warning: str | None = None
    # the file it was read from (not written into it)
    path: str | None = field(default=None, compare=False, metadata={"transient": True})

    def __post_init__(self):
        self.kind = self.kind or self.KIND

    @classmethod
    def nested(cls) -> dict:
        return {"device": DeviceRecord.from_dict}

    @property
    def date(self) -> str:
        """The day it was made (YYYY-MM-DD), or "undated"."""
        return (self.created or "")[:10] or "undated"

    @property
    def when(self) -> str:
        """The minute it was made (YYYY-MM-DD HH:MM), or "undated"."""
        return (self.created or "")[:16].replace("T", " ") or "undated"

    @property
    def status(self) -> str:
        """"complete", or "incomplete: " and why (interrupted, failed, or did not finish)."""
        if self.complete is not False:
            return "complete"
        return "incomplete: " + (self.interrupted or self.failed or "run did not finish")


class ModelHeader:
    """What the records of a model (run, tp, moe, fp8, workload) say beside the header: the model, the
    price and power quote. A mixin of properties over their `model` and `price` fields."""

    @property
    def model_name(self) -> str:
        return (self.model or {}).get("name", "?")

    @property
    def price_per_hour(self) -> float | None:
        return self.price.price_per_hour if self.price else None

    @property
    def power_kw(self) -> float | None:
        return self.price.power_kw if self.price else None

    @property
    def price_sources(self) -> str:
        """Where the recorded price and power came from, as one phrase ("none recorded" without a quote)."""
        return self.price.sources if self.price else "none recorded"

    @property
    def price_hint(self) -> str | None:
        """What to pass for a missing price or power (recorded at run time), or None."""
        return self.price.hint if self.price else None


@dataclass(kw_only=True)
class RunRecord(Header, ModelHeader):
    """`tokenbench run`: a decode, prefill or mixed sweep of measured rows and the steps derived from them.
    `ceilings` holds the spec-sheet and measured ceilings (copy bandwidth, matmul peak) its rows were read
    against, under one name each."""

    KIND: ClassVar[str] = "run"
    ROW: ClassVar[type] = MeasuredRow
    STEP: ClassVar[type] = Step
    REQUIRED: ClassVar[tuple] = ("schema_version", "kind", "device", "model", "rows", "steps")
    model: dict
    dtype: str | None = None
    phase: str | None = None
    price: Price | None = None
    ceilings: Ceilings = field(default_factory=Ceilings)
    peak_file: dict | None = None  # the `tokenbench peak` file the measured matmul peak came from
    measured_copy_gbps_after: float | None = None
    bandwidth_drift: float | None = None
    bandwidth_warning: str | None = None
    copy_bytes: int | None = None
    copy_timing: dict | None = None
    energy: dict | None = None
    unreliable_rows: int | None = None
    prefill_gemm_share_of_measured_peak: float | None = None
    rows: list = field(default_factory=list)
    steps: list = field(default_factory=list)

    @classmethod
    def nested(cls) -> dict:
        return {**super().nested(), "price": Price.from_dict, "ceilings": _ceilings,
                "rows": _list_of(cls.ROW), "steps": _list_of(cls.STEP)}

    def check_values(self, where: str) -> None:
        check_model(where, self.model)
        check_dtype(where, "dtype", self.dtype)
        for name in ("copy_bytes", "measured_copy_gbps_after"):
            check_value(where, name, getattr(self, name), positive=True)

    @property
    def layers(self) -> int | None:
        layers = (self.model or {}).get("layers")
        return layers if isinstance(layers, int) and not isinstance(layers, bool) and layers > 0 else None

    def usable_steps(self) -> list[Step]:
        """Steps that are operating points: valid, timed, fitting in the device's memory."""
        return [s for s in self.steps if s.usable]

    def rows_of(self, step: Step) -> dict[str, MeasuredRow]:
        """The measured rows a step was composed from (its batch, context and backend), by op."""
        return {r.op: r for r in self.rows
                if r.batch == step.batch and r.context == step.context and r.backend == step.backend}


@dataclass(kw_only=True)
class TpRow(MeasuredRow):
    tp: int | None = None
    rank: int | None = None
    algbw_gbps: float | None = None
    busbw_gbps: float | None = None


@dataclass(kw_only=True)
class TpStep(Step):
    SIGNED: ClassVar[tuple] = ("all_reduce_share_from_difference",)  # a difference of two noisy times
    tp: int | None = None
    layer_compute_seconds: float | None = None
    all_reduce_seconds: float | None = None
    all_reduce_seconds_per_layer: float | None = None
    all_reduce_share: float | None = None
    all_reduce_share_from_difference: float | None = None
    all_reduce_busbw_gbps: float | None = None
    kernel_seconds_per_rank: list | None = None
    all_reduce_seconds_per_rank: list | None = None
    tokens_per_s_per_gpu: float | None = None
    weight_bytes_per_gpu: float | None = None
    kv_bytes_per_gpu: float | None = None
    bytes_needed_per_gpu: float | None = None
    flops_per_gpu: float | None = None
    bytes_per_gpu: float | None = None


@dataclass(kw_only=True)
class TpRecord(RunRecord):
    """`tokenbench tp`: the Megatron-sharded layer over N ranks, one row per rank and timed item."""

    KIND: ClassVar[str] = "tp"
    ROW: ClassVar[type] = TpRow
    STEP: ClassVar[type] = TpStep
    tp: dict | None = None
    measured_copy_gbps_per_rank: list | None = None


@dataclass(kw_only=True)
class MoeRow(MeasuredRow):
    expected_active_experts: float | None = None
    active_experts_measured: float | None = None
    active_experts_per_set: list | None = None
    active_experts_note: str | None = None
    bytes_actual: float | None = None
    gbps_actual: float | None = None
    moe_seconds_all_layers: float | None = None
    routing: str | None = None  # uniform | zipf:S (kernels/moe_routing.py)
    router: str | None = None
    max_tokens_per_expert: float | None = None  # the heaviest expert's tokens, mean over the timed sets
    max_tokens_per_expert_per_set: list | None = None


@dataclass(kw_only=True)
class MoeStep(Step):
    RATE_OF_STEP: ClassVar[bool] = False  # the MoE-only step: its rates are of the MLP alone
    moe_layers: int | None = None
    expected_active_experts: float | None = None
    active_experts_measured: float | None = None
    decode_weight_bytes_expected: float | None = None
    routing: str | None = None
    router: str | None = None
    max_tokens_per_expert: float | None = None


@dataclass(kw_only=True)
class MoeRecord(RunRecord):
    """`tokenbench moe`: a mixture-of-experts MLP per backend, and the MoE-only decode step."""

    KIND: ClassVar[str] = "moe"
    ROW: ClassVar[type] = MoeRow
    STEP: ClassVar[type] = MoeStep


@dataclass(kw_only=True)
class Fp8Row(MeasuredRow):
    precision: str | None = None
    scaling: str | None = None


@dataclass(kw_only=True)
class Fp8Step(Step):
    RATE_OF_STEP: ClassVar[bool] = False  # a GEMM-only step
    precision: str | None = None
    gemm_seconds_per_layer: float | None = None
    weight_bytes: float | None = None
    speedup_vs_bf16: float | None = None


@dataclass(kw_only=True)
class Fp8Record(RunRecord):
    """`tokenbench fp8`: the layer's GEMMs in bf16 and FP8 (per backend and scaling), GEMM-only steps."""

    KIND: ClassVar[str] = "fp8"
    ROW: ClassVar[type] = Fp8Row
    STEP: ClassVar[type] = Fp8Step


@dataclass(kw_only=True)
class PeakRow(Entry):
    """One ceiling `tokenbench peak` measured: a matmul dtype's TFLOP/s or a copy/read GB/s, at its best shape."""

    REQUIRED: ClassVar[tuple] = ("metric", "unit")
    NON_NEGATIVE: ClassVar[bool] = True
    POSITIVE: ClassVar[tuple] = ("measured", "spec", "ratio", "seconds_p50")
    metric: str  # matmul | copy | read
    dtype: str | None = None
    unit: str
    measured: float | None = None
    spec: float | None = None
    ratio: float | None = None
    best_shape: dict | None = None
    best_shape_label: str | None = None
    variant: str | None = None
    shapes: list | None = None
    seconds_p50: float | None = None
    noise: float | None = None
    timer: str | None = None
    rel_error: float | None = None
    skipped: str | None = None
    stopped: str | None = None
    sweep_s: float | None = None


@dataclass(kw_only=True)
class PeakRecord(Header):
    """`tokenbench peak`: the device's measured ceilings, one row each; `measured_tflops` maps a dtype to
    its matmul ceiling, `measured_gbps` is the copy bandwidth (read + written)."""

    KIND: ClassVar[str] = "peak"
    REQUIRED: ClassVar[tuple] = ("schema_version", "kind", "device", "rows")
    measured_tflops: dict = field(default_factory=dict)
    measured_gbps: float | None = None
    measured_read_gbps: float | None = None
    rows: list = field(default_factory=list)

    @classmethod
    def nested(cls) -> dict:
        return {**super().nested(), "rows": _list_of(PeakRow)}

    @classmethod
    def from_dict(cls, d, where: str):
        record = super().from_dict(d, where)
        for dtype, value in record.measured_tflops.items():
            if value is not None and not _WANT["float"][1](value):
                raise bad(where, f"measured_tflops.{dtype}", "a number", value)
            check_value(where, f"measured_tflops.{dtype}", value, positive=True)
        for name in ("measured_gbps", "measured_read_gbps"):
            check_value(where, name, getattr(record, name), positive=True)
        return record

    def row(self, metric: str, dtype: str | None = None) -> PeakRow | None:
        """The measured row for `metric` (and `dtype`), or None when it was skipped or not measured."""
        for r in self.rows:
            if r.metric == metric and (dtype is None or r.dtype == dtype) and r.measured:
                return r
        return None


# --- workloads -----------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class WorkloadStepEntry(Entry):
    """A model step a workload composes (bench/workload/compose.py WorkloadStep, as written): its shape
    (decode rows at a context, a mixed step's prompt chunk, a prefill's prompts and chunk), its time
    (layers x layer + final_norm + lm_head), work and board energy, or why it has none."""

    REQUIRED: ClassVar[tuple] = ("phase", "batch", "context")
    NON_NEGATIVE: ClassVar[bool] = True
    POSITIVE: ClassVar[tuple] = ("batch", "seconds", "layer_seconds")
    phase: str
    batch: int
    context: int
    chunk_seqs: int | None = None
    chunk_tokens: int | None = None
    prefix: int | None = None
    chunk: int | None = None
    seconds: float | None = None
    flops: float | None = None
    bytes: float | None = None
    layer_seconds: float | None = None
    reason: str | None = None
    board_joules: float | None = None
    energy_note: str | None = None  # --energy steps: why the step's own window gave no reading


def _points(value, where: str) -> list:
    """Workload points, each checked as costmodel.workload_economics.WorkloadPoint; kept as their dicts."""
    from costmodel.input_errors import CostInputError
    from costmodel.workload_economics import WorkloadPoint

    if not isinstance(value, list):
        raise UserError(f"{where} must be a list, got {type(value).__name__}")
    for i, p in enumerate(value):
        try:
            WorkloadPoint.from_dict(p, f"{where}[{i}]")
        except CostInputError as exc:
            raise UserError(str(exc)) from None
    return value


@dataclass(kw_only=True)
class WorkloadRecord(Header, ModelHeader):
    """`tokenbench workload`: an ISL/OSL workload at each concurrency; the measured rows, the steps composed
    from them, and the points (costmodel.workload_economics.WorkloadPoint dicts, as written; typed in
    `workload_points`) with how each was composed and priced."""

    KIND: ClassVar[str] = "workload"
    REQUIRED: ClassVar[tuple] = ("schema_version", "kind", "device", "model", "workload", "rows", "steps",
                                 "points")
    model: dict
    dtype: str | None = None  # what the points are labelled with: fp8 for FP8 weights
    activation_dtype: str | None = None
    phase: str | None = None
    price: Price | None = None
    ceilings: Ceilings = field(default_factory=Ceilings)
    workload: dict
    energy: dict | None = None
    copy_bytes: int | None = None
    copy_timing: dict | None = None
    rows: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    points: list = field(default_factory=list)
    compositions: list | None = None
    economics: list | None = None
    e2e: list | None = None

    @classmethod
    def nested(cls) -> dict:
        return {**super().nested(), "price": Price.from_dict, "ceilings": _ceilings,
                "rows": _list_of(MeasuredRow), "steps": _list_of(WorkloadStepEntry), "points": _points}

    def check_values(self, where: str) -> None:
        check_model(where, self.model)
        check_dtype(where, "dtype", self.dtype)
        check_dtype(where, "activation_dtype", self.activation_dtype)
        for key in ("isl", "osl", "chunk", "tp"):
            v = self.workload.get(key)
            if v is None and key in ("chunk", "tp"):
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(where, f"workload.{key}", "a positive integer", v)

    @cached_property
    def workload_points(self) -> tuple:
        """The points as costmodel.workload_economics.WorkloadPoint (`points` keeps them as written)."""
        from costmodel.workload_economics import WorkloadPoint

        return tuple(WorkloadPoint.from_dict(p, f"results file {self.path}: points[{i}]")
                     for i, p in enumerate(self.points))

    @property
    def isl(self) -> int:
        return self.workload["isl"]

    @property
    def osl(self) -> int:
        return self.workload["osl"]

    @property
    def workload_label(self) -> str:
        """ISL/OSL as the points name it (1k/1k, 256/64)."""
        from costmodel.workload_economics import workload_label

        return workload_label(self.isl, self.osl)

    def check_for_points(self) -> None:
        """What the readers of its points (report, compare --served) need beyond the store's checks: a
        dtype, a model name, positive ISL and OSL, a positive price and power or none; one UserError naming
        the file."""
        where = f"workload file {self.path}"
        if "dtype" not in self.nulls and self.dtype is None:
            raise UserError(f"{where} lacks 'dtype'")
        if not isinstance(self.model.get("name"), str):
            raise UserError(f"{where}: model.name must be a string")
        for key in ("isl", "osl"):
            v = self.workload.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UserError(f"{where}: workload.{key} must be a positive integer, got {v!r}")
        for name in ("price_per_hour", "power_kw"):
            v = getattr(self.price, name) if self.price else None
            if v is not None and v <= 0:
                raise UserError(f"{where}: price.{name} must be a positive number or null, got {v!r}")

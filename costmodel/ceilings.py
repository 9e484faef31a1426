"""A device's spec sheet and the ceilings a roofline is drawn under: one `DeviceSpec` and one `Ceilings` for
bench and costmodel alike (bench reads the catalog into DeviceSpec; costmodel never imports bench).

Units are the spec sheet's: TFLOP/s and GB/s (1e9 bytes/s). A measured copy bandwidth counts bytes read plus
bytes written, as datasheet bandwidth does. `roofline_seconds` is the one bound every reader divides by.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


def positive(x) -> float | None:
    """x as a float when it is a positive number (not a bool), else None: an unknown figure."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 else None


@dataclass(frozen=True)
class DeviceSpec:
    """One spec-sheet entry: dense peaks per dtype (TFLOP/s, None when unknown) and memory bandwidth, with
    the source they come from. The catalog's matching words (match, exclude, sm) ride along for bench."""

    key: str
    name: str
    peak_tflops: dict = field(default_factory=dict)  # dtype -> TFLOP/s or None
    mem_bw_gbs: float | None = None
    memory_gb: float | None = None
    tdp_w: float | None = None
    vendor: str = ""
    arch: str = ""
    source: str = ""
    match: tuple = ()
    sm: str | None = None
    exclude: tuple = ()  # words that name a sibling variant this entry must not be matched to

    def peak(self, dtype: str) -> float | None:
        """Dense TFLOP/s for `dtype`, or None when the sheet gives none."""
        return positive(self.peak_tflops.get(dtype))

    def peak_flops(self, dtype: str) -> float | None:
        tflops = self.peak(dtype)
        return None if tflops is None else tflops * 1e12

    @property
    def mem_bw_bytes_per_s(self) -> float | None:
        return None if not self.mem_bw_gbs else self.mem_bw_gbs * 1e9

    def to_dict(self) -> dict:
        d = asdict(self)
        d["match"], d["exclude"] = list(self.match), list(self.exclude)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DeviceSpec:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        known["match"] = tuple(known.get("match") or ())
        known["exclude"] = tuple(known.get("exclude") or ())
        known["peak_tflops"] = dict(known.get("peak_tflops") or {})
        return cls(**{"key": d.get("key") or "", "name": d.get("name") or "", **known})


@dataclass(frozen=True)
class Ceilings:
    """The rates one device reaches for one dtype: from its spec sheet and as measured on it (matmul peak by
    `tokenbench peak`, copy bandwidth in the run); None where unknown. `notes` say what is missing."""

    dtype: str | None = None
    spec_tflops: float | None = None
    spec_gbps: float | None = None
    measured_tflops: float | None = None
    measured_gbps: float | None = None
    notes: tuple = ()

    @property
    def peak_flops(self) -> float | None:
        """The measured matmul peak in FLOP/s."""
        return None if self.measured_tflops is None else self.measured_tflops * 1e12

    @property
    def copy_bw(self) -> float | None:
        """The measured copy bandwidth in bytes/s."""
        return None if self.measured_gbps is None else self.measured_gbps * 1e9

    @classmethod
    def of_spec(cls, spec: DeviceSpec | None, dtype: str, **measured) -> Ceilings:
        if spec is None:
            return cls(dtype=dtype, **measured)
        return cls(dtype=dtype, spec_tflops=spec.peak(dtype), spec_gbps=positive(spec.mem_bw_gbs), **measured)

    def to_dict(self) -> dict:
        return {"dtype": self.dtype, "spec_tflops": self.spec_tflops, "spec_gbps": self.spec_gbps,
                "measured_tflops": self.measured_tflops, "measured_gbps": self.measured_gbps}


def roofline_seconds(flops: float, nbytes: float, tflops: float | None, gbps: float | None) -> float | None:
    """max(FLOPs / peak, bytes / bandwidth) in seconds; a floor whose rate is unknown is left out (None when
    both are)."""
    floors = []
    if tflops:
        floors.append(flops / (tflops * 1e12))
    if gbps:
        floors.append(nbytes / (gbps * 1e9))
    return max(floors) if floors else None

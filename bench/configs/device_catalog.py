"""The local device (detected on demand, never at import) and the spec-sheet catalog it is matched to."""
from __future__ import annotations

import json
import os
import platform
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from bench.errors import UserError
from costmodel.ceilings import DeviceSpec  # the one spec-sheet entry, shared with costmodel

DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "fp4")
# The spec-sheet peak that applies to each run dtype: torch leaves TF32 off for float32 matmuls by default.
PEAK_DTYPE = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16"}


@lru_cache(maxsize=1)
def catalog() -> dict[str, DeviceSpec]:
    data = json.loads(resources.files("bench").joinpath("data/devices.json").read_text())
    out = {}
    for entry in data["devices"]:
        entry = dict(entry)
        entry["match"] = tuple(entry.get("match", ()))
        entry["exclude"] = tuple(entry.get("exclude", ()))
        spec = DeviceSpec(**entry)
        if spec.key in out:
            raise ValueError(f"devices.json lists {spec.key!r} twice")
        out[spec.key] = spec
    return out


def lookup(key: str) -> DeviceSpec:
    specs = catalog()
    if key not in specs:
        raise UserError(f"unknown device {key!r}; choose one of: {', '.join(specs)}")
    return specs[key]


def _has_word(name: str, pattern: str) -> bool:
    """`pattern` in `name` as a whole token: 'H200' is not in 'GH200', 'B200' is not in 'GB200'."""
    return re.search(rf"(?<![a-z0-9]){re.escape(pattern.lower())}(?![a-z0-9])", name.lower()) is not None


def match_spec(device_name: str) -> DeviceSpec | None:
    """The catalog entry with a pattern in `device_name` as a whole token and none of its excluded words;
    the longest pattern wins. A variant the catalog lacks (H100 NVL, A100 40GB) matches nothing: its peaks
    are unknown rather than a neighbour's."""
    best, best_len = None, 0
    for spec in catalog().values():
        if any(_has_word(device_name, word) for word in spec.exclude):
            continue
        for pattern in spec.match:
            if _has_word(device_name, pattern) and len(pattern) > best_len:
                best, best_len = spec, len(pattern)
    return best


@dataclass
class LocalDevice:
    """What was detected on this machine; `spec` is None when the catalog does not know the device."""

    kind: str  # "cuda" or "cpu"
    name: str
    torch_device: str
    memory_bytes: int
    spec: DeviceSpec | None
    details: dict = field(default_factory=dict)

    @property
    def key(self) -> str | None:
        return None if self.spec is None else self.spec.key

    def to_dict(self) -> dict:
        return {
            "key": self.key,
            "name": self.name,
            "kind": self.kind,
            "memory_bytes": self.memory_bytes,
            "spec": None if self.spec is None else self.spec.to_dict(),
            **self.details,
        }


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_identity(path: str = "/proc/cpuinfo") -> dict:
    """The CPU's family, model and stepping (x86 /proc/cpuinfo), which tell apart CPUs sold under one name
    (a VM's "AMD EPYC" is several generations); empty where not readable."""
    keys = {"cpu family": "cpu_family", "model": "cpu_model", "stepping": "cpu_stepping"}
    out = {}
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block is enough
                name, _, value = line.partition(":")
                if name.strip() in keys:
                    out[keys[name.strip()]] = value.strip()
    except OSError:
        pass
    return out


def cpu_caches() -> dict:
    """Cache sizes in bytes from sysfs (Linux); empty where not readable."""
    caches = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    if not os.path.isdir(base):
        return caches
    for entry in sorted(os.listdir(base)):
        if not entry.startswith("index"):
            continue
        try:
            with open(f"{base}/{entry}/level") as f:
                level = f.read().strip()
            with open(f"{base}/{entry}/type") as f:
                ctype = f.read().strip()
            with open(f"{base}/{entry}/size") as f:
                size = f.read().strip()
        except OSError:
            continue
        m = re.fullmatch(r"(\d+)([KMG]?)", size)
        if not m:
            continue
        mult = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2)]
        name = f"L{level}" + ("d" if ctype == "Data" else "i" if ctype == "Instruction" else "")
        caches[name] = int(m.group(1)) * mult
    return caches


def last_level_cache_bytes(device: LocalDevice) -> int:
    """Bytes a rotation of input sets must exceed so timings do not measure the cache."""
    if device.kind == "cuda":
        return int(device.details.get("l2_bytes") or 60 * 1024**2)
    caches = device.details.get("caches", {})
    return max(caches.values(), default=64 * 1024**2)


def total_ram_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def nvml_details(index: int) -> dict:
    """Driver, clocks, power limit and temperature from NVML where it can be read; {} otherwise."""
    try:
        import pynvml
    except ImportError:
        return {"nvml": "nvidia-ml-py not installed"}
    from bench.configs.nvml_board import nvml_handle

    out = {}
    try:
        pynvml.nvmlInit()
        h, how = nvml_handle(pynvml, index)  # by UUID / PCI id: CUDA's ordinal is not NVML's
        out["nvml_board"] = how
        readers = {
            "driver": lambda: pynvml.nvmlSystemGetDriverVersion(),
            "sm_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
            "mem_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM),
            "max_sm_clock_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
            "power_limit_w": lambda: pynvml.nvmlDeviceGetPowerManagementLimit(h) / 1000.0,
            "temperature_c": lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
        }
        for name, read in readers.items():
            try:
                value = read()
                out[name] = value.decode() if isinstance(value, bytes) else value
            except pynvml.NVMLError:
                pass
    except Exception as exc:  # noqa: BLE001 - NVML missing or refused: the run goes on without these fields
        out["nvml"] = f"unavailable: {exc}"
    return out


def detect(requested: str = "auto") -> LocalDevice:
    """Detect the device to measure: 'auto' prefers CUDA, 'cuda' insists on it, 'cpu' forces the CPU."""
    import torch

    if requested not in ("auto", "cuda", "cpu"):
        raise UserError(f"unknown device {requested!r}; choose one of: auto, cuda, cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA device")
    if requested != "cpu" and torch.cuda.is_available():
        index = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        details = {
            "compute_capability": f"{props.major}.{props.minor}",
            "sm_count": props.multi_processor_count,
            "l2_bytes": getattr(props, "L2_cache_size", None),
            "cuda": torch.version.cuda,
            "uuid": str(getattr(props, "uuid", "")) or None,
            "hip": getattr(torch.version, "hip", None),
        }
        details.update(nvml_details(index))
        return LocalDevice("cuda", props.name, f"cuda:{index}", props.total_memory, match_spec(props.name), details)
    details = {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "caches": cpu_caches(),
               **cpu_identity()}
    return LocalDevice("cpu", cpu_model_name(), "cpu", total_ram_bytes(), None, details)

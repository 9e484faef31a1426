"""The report's inputs: result files read and checked, runs grouped into curves, ceilings found.

A curve is one run's batch sweep for one backend at one context: tokens/s per device and per user, and
the cost figures, at each batch. Curves are compared on one axis, so a report's runs must share one model
and one dtype unless the user asks for a mixed report (--allow-mixed).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import UserError
from bench.metrics import PEAK_DTYPE
from bench.results import SCHEMA_VERSION, load_record, read_json


@dataclass(eq=False)  # identity: a run is one file
class Run:
    """One result file."""

    path: Path
    record: dict
    label: str = ""  # unique among the report's runs; set by read_runs
    measured_peak: tuple | None = None  # (TFLOP/s, where it came from), for the run's dtype

    @property
    def device(self) -> dict:
        return self.record["device"]

    @property
    def device_name(self) -> str:
        return self.device.get("name") or self.device.get("key") or "unknown device"

    @property
    def device_id(self) -> str:
        """What makes two runs 'the same device' for the roofline page: catalog key, else name and kind."""
        return self.device.get("key") or f"{self.device_name} ({self.device.get('kind', '?')})"

    @property
    def model(self) -> str:
        return (self.record.get("model") or {}).get("name", "?")

    @property
    def dtype(self) -> str:
        return self.record.get("dtype", "?")

    @property
    def date(self) -> str:
        return (self.record.get("created") or "")[:10] or "undated"

    @property
    def when(self) -> str:
        created = self.record.get("created") or ""
        return created[:16].replace("T", " ") or "undated"

    @property
    def is_cpu(self) -> bool:
        return self.device.get("kind") == "cpu"

    def valid_rows(self) -> list[dict]:
        return [r for r in self.record["rows"] if r.get("valid") and r.get("seconds_p50")]

    def valid_steps(self) -> list[dict]:
        return [s for s in self.record["steps"] if s.get("valid") and s.get("tokens_per_s")]

    def interactive_steps(self) -> list[dict]:
        """Steps with a tokens/s per user (decode and mixed): the ones a throughput-interactivity curve has.
        A prefill step has none (it emits one token per prompt); it stays in the roofline and tables."""
        return [s for s in self.valid_steps() if s.get("tokens_per_s_per_user")]


@dataclass(eq=False)
class Curve:
    run: Run
    backend: str
    context: int
    steps: list[dict]  # valid steps, by batch
    label: str = ""


@dataclass
class Ceilings:
    """The rates a roofline is drawn under, for one run's device and dtype; None where unknown."""

    spec_tflops: float | None
    spec_gbps: float | None
    measured_tflops: float | None
    measured_gbps: float | None
    notes: list[str] = field(default_factory=list)


def expand_paths(paths: list[str]) -> list[Path]:
    """Files as given; a folder stands for the *.json files in it."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.json"))
            if not found:
                raise UserError(f"no result files (*.json) in folder {p}")
            out.extend(found)
        else:
            out.append(p)
    return out


def _peek(path: Path):
    """The parsed JSON of a file, for the checks that come before load_record."""
    return read_json(path, "results file")


def read_runs(paths: list[str]) -> tuple[list[Run], list[tuple[Path, dict]]]:
    """The runs and the peak files (`tokenbench peak` output) among the paths; every file checked first.
    Workload files (`tokenbench workload`) are left out: read_inputs gives them too."""
    runs, peaks, workloads = read_inputs(paths)
    if not runs:
        raise UserError("no result file of `tokenbench run` among the inputs (only peak or workload files)")
    return runs, peaks


def read_inputs(paths: list[str]) -> tuple[list[Run], list[tuple[Path, dict]], list]:
    """Runs, peak files and workload files (costmodel.workload_record.WorkloadRun) among the paths; every
    file checked first. At least one run or workload file is needed."""
    if not paths:
        raise UserError("no result files given: tokenbench report RESULTS.json [...] (or a folder of them)")
    files = expand_paths(paths)
    peeked = [(p, _peek(p)) for p in files]
    peaks = [(p, d) for p, d in peeked if isinstance(d, dict) and d.get("kind") == "peak"]
    results = [(p, d) for p, d in peeked if not (isinstance(d, dict) and d.get("kind") == "peak")]
    if not results:
        raise UserError("only peak files given; the report needs at least one result file of `tokenbench run` "
                        "or `tokenbench workload`")
    versions = {}
    for p, d in results:
        if isinstance(d, dict) and "schema_version" in d:
            versions.setdefault(d["schema_version"], p)
    if len(versions) > 1:
        listed = "; ".join(f"{p} has schema version {v!r}" for v, p in versions.items())
        raise UserError(f"results files of different schema versions: {listed}. This tokenbench reads "
                        f"version {SCHEMA_VERSION}; re-run or convert the others")
    from costmodel.workload_record import is_workload

    runs = [Run(p, load_record(p)) for p, d in results if not is_workload(d)]
    workloads = [_workload(p) for p, d in results if is_workload(d)]
    _label_runs(runs)
    for run in runs:
        run.measured_peak = measured_peak(run.record, run.dtype) or _peak_from_files(run, peaks)
    return runs, peaks, workloads


def _workload(path: Path):
    """A workload file, checked like a run (load_record) and then for its points."""
    from costmodel.errors import CostInputError
    from costmodel.workload_record import workload_run

    record = load_record(path)
    try:
        return workload_run(record, str(path))
    except CostInputError as exc:
        raise UserError(str(exc)) from None


def _label_runs(runs: list[Run]) -> None:
    """Short legend labels: device and time of the run, plus the file name where those collide."""
    for run in runs:
        run.label = f"{run.device.get('key') or run.device_name} {run.when}"
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.label] = seen.get(run.label, 0) + 1
    for run in runs:
        if seen[run.label] > 1:
            run.label = f"{run.label} ({run.path.stem})"


def check_mixing(runs: list[Run], allow_mixed: bool) -> bool:
    """Refuse runs of several models or dtypes on one set of axes unless asked; True when mixed."""
    kinds: dict[tuple, list[str]] = {}
    for run in runs:
        kinds.setdefault((run.model, run.dtype), []).append(run.path.name)
    if len(kinds) <= 1:
        return False
    if not allow_mixed:
        listed = "; ".join(f"{m} {d}: {', '.join(files)}" for (m, d), files in kinds.items())
        raise UserError(f"the results mix models or dtypes ({listed}); their curves would share axes and not be "
                        f"like for like. Report each model and dtype separately, or pass --allow-mixed to draw "
                        f"them together, labelled")
    return True


def curves(runs: list[Run], mixed: bool) -> list[Curve]:
    """One curve per run, backend and context, its valid steps ordered by batch; labels say only what varies."""
    out = []
    for run in runs:
        keys = sorted({(s["backend"], s["context"]) for s in run.interactive_steps()}, key=lambda k: (k[1], k[0]))
        for backend, context in keys:
            steps = sorted((s for s in run.interactive_steps() if s["backend"] == backend and s["context"] == context),
                           key=lambda s: s["batch"])
            out.append(Curve(run, backend, context, steps))
    backends = {c.backend for c in out}
    contexts = {c.context for c in out}
    for c in out:
        parts = [c.run.label]
        if mixed:
            parts.append(f"{c.run.model} {c.run.dtype}")
        if len(backends) > 1:
            parts.append(c.backend)
        if len(contexts) > 1:
            parts.append(f"ctx {c.context}")
        c.label = " · ".join(parts)
    return out


# --- ceilings -------------------------------------------------------------------------------------------

def _positive(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 else None


def _tflops_for(obj, dtype: str) -> float | None:
    """TFLOP/s for `dtype` in the shapes a peak figure may take: {dtype: x}, {dtype: {"tflops": x}},
    or a list of {"dtype": ..., "tflops": ...}."""
    if isinstance(obj, dict):
        entry = obj.get(dtype)
        if _positive(entry):
            return _positive(entry)
        if isinstance(entry, dict):
            for key in ("tflops", "measured_tflops", "peak_tflops"):
                if _positive(entry.get(key)):
                    return _positive(entry[key])
        for key in ("measured_peak_tflops", "peak_tflops", "tflops", "peaks", "results"):
            if key in obj and (found := _tflops_for(obj[key], dtype)):
                return found
    if isinstance(obj, list):
        for entry in obj:
            if isinstance(entry, dict) and entry.get("dtype") == dtype:
                for key in ("tflops", "measured_tflops", "peak_tflops"):
                    if _positive(entry.get(key)):
                        return _positive(entry[key])
    return None


def measured_peak(record: dict, dtype: str) -> tuple[float, str] | None:
    """The measured matmul TFLOP/s for `dtype` carried by a run, wherever this version of the schema keeps it.

    `tokenbench peak` is new: runs may carry `measured_peak_tflops`, `measured_peak` or the plan's ceilings
    (`measured_peak_flops`, FLOP/s for the run's dtype). Read them all defensively; None when absent.
    """
    key = PEAK_DTYPE.get(dtype, dtype)
    for name in ("measured_peak_tflops", "measured_peak"):
        if (value := _tflops_for(record.get(name), key)) is not None:
            return value, f"measured peak recorded in the run ({name})"
    for holder in (record.get("ceilings"), (record.get("plan") or {}).get("ceilings")):
        if isinstance(holder, dict) and _positive(holder.get("measured_peak_flops")):
            return holder["measured_peak_flops"] / 1e12, "measured peak recorded in the run (ceilings)"
    return None


def _peak_from_files(run: Run, peaks: list[tuple[Path, dict]]) -> tuple[float, str] | None:
    """A peak file of the same device (by catalog key or name) gives the run its measured FLOP ceiling."""
    for path, peak in peaks:
        dev = peak.get("device")
        names = {dev.get("key"), dev.get("name")} if isinstance(dev, dict) else {dev}
        if not names & {run.device.get("key"), run.device_name} - {None}:
            continue
        if (value := _tflops_for(peak, PEAK_DTYPE.get(run.dtype, run.dtype))) is not None:
            return value, f"measured peak from {path.name}"
    return None


def ceilings(run: Run) -> Ceilings:
    """Spec-sheet and measured ceilings for the run's dtype, with a note for each one that is missing."""
    spec = run.device.get("spec") or {}
    peak_key = PEAK_DTYPE.get(run.dtype, run.dtype)
    spec_tflops = _positive((spec.get("peak_tflops") or {}).get(peak_key))
    spec_gbps = _positive(spec.get("mem_bw_gbs"))
    measured_tflops = run.measured_peak[0] if run.measured_peak else None
    measured_gbps = _positive(run.record.get("measured_copy_gbps"))
    notes = []
    if not spec:
        notes.append(f"spec-sheet ceilings unknown: {run.device_name} is not in the device catalog")
    else:
        if spec_tflops is None:
            notes.append(f"the spec sheet gives no {peak_key} peak")
        if spec_gbps is None:
            notes.append("the spec sheet gives no memory bandwidth")
    if measured_tflops is None:
        notes.append(f"no measured {peak_key} FLOP ceiling (run `tokenbench peak`): only the measured "
                     f"bandwidth ceiling is drawn" if measured_gbps else f"no measured {peak_key} FLOP ceiling")
    if measured_gbps is None:
        notes.append("no measured copy bandwidth in the run")
    return Ceilings(spec_tflops, spec_gbps, measured_tflops, measured_gbps, notes)

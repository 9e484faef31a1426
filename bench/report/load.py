"""The report's inputs: result files read and checked, runs grouped into curves, ceilings found.

A curve is one run's batch sweep for one backend at one context: tokens/s per device and per user, and
the cost figures, at each batch. Curves are compared on one axis, so a report's runs must share one model
and one dtype unless the user asks for a mixed report (--allow-mixed).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.errors import UserError
from bench.configs.device_catalog import PEAK_DTYPE
from bench.records.schema import DeviceRecord, MeasuredRow, PeakRecord, RunRecord, Step
from bench.records.store import from_dict, peek_kind, read_json
from costmodel.ceilings import Ceilings


@dataclass(eq=False)  # identity: a run is one file
class Run:
    """One result file: its typed record (bench.records.store), and what the report adds to it."""

    path: Path
    record: RunRecord
    label: str = ""  # unique among the report's runs; set by read_runs
    measured_peak: tuple | None = None  # (TFLOP/s, where it came from), for the run's dtype

    @property
    def device(self) -> DeviceRecord:
        return self.record.device

    @property
    def model(self) -> str:
        return self.record.model_name

    @property
    def dtype(self) -> str:
        return self.record.dtype or "?"

    def valid_rows(self) -> list[MeasuredRow]:
        return [r for r in self.record.rows if r.valid and r.seconds_p50]

    def valid_steps(self) -> list[Step]:
        return [s for s in self.record.steps if s.valid and s.tokens_per_s]

    def interactive_steps(self) -> list[Step]:
        """Steps with a tokens/s per user (decode and mixed): the ones a throughput-interactivity curve has.
        A prefill step has none (it emits one token per prompt); it stays in the roofline and tables."""
        return [s for s in self.valid_steps() if s.tokens_per_s_per_user]


@dataclass(eq=False)
class Curve:
    run: Run
    backend: str
    context: int
    steps: list[Step]  # valid steps (or projected ones), by batch
    label: str = ""


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


def read_runs(paths: list[str]) -> tuple[list[Run], list[tuple[Path, PeakRecord]]]:
    """The runs and the peak files (`tokenbench peak` output) among the paths; every file checked first.
    Workload files (`tokenbench workload`) are left out: read_inputs gives them too."""
    runs, peaks, _ = read_inputs(paths)
    if not runs:
        raise UserError("no result file of `tokenbench run` among the inputs (only peak or workload files)")
    return runs, peaks


def read_inputs(paths: list[str], price_per_hour: float | None = None,
                power_kw: float | None = None) -> tuple[list[Run], list[tuple[Path, PeakRecord]], list]:
    """Runs, peak files and workload files (bench.records.schema.WorkloadRecord) among the paths, each read
    through the store (older schemas migrated); every file checked before anything is drawn. At least one
    run or workload file is needed. Each run and workload is costed at price_per_hour and power_kw where
    given, else at what it recorded, else (a CPU) at the CPU catalog's estimate (reprice_record)."""
    from bench.derive.stored_run_pricing import reprice_record

    if not paths:
        raise UserError("no result files given: tokenbench report RESULTS.json [...] (or a folder of them)")
    files = expand_paths(paths)
    peeked = [(p, read_json(p, "results file")) for p in files]
    peaks = [(p, from_dict(d, str(p), ("peak",))) for p, d in peeked if peek_kind(d) == "peak"]
    results = [(p, d) for p, d in peeked if peek_kind(d) != "peak"]
    if not results:
        raise UserError("only peak files given; the report needs at least one result file of `tokenbench run` "
                        "or `tokenbench workload`")
    runs, workloads = [], []
    for p, d in results:
        if peek_kind(d) == "workload":
            workloads.append(reprice_record(_workload(p, d), price_per_hour, power_kw))
            continue
        record = from_dict(d, str(p), ("run",))
        record.path = str(p)
        runs.append(Run(p, reprice_record(record, price_per_hour, power_kw)))
    _label_runs(runs)
    for run in runs:
        run.measured_peak = measured_peak(run.record) or _peak_from_files(run, peaks)
    return runs, peaks, workloads


def _workload(path: Path, data: dict):
    """A workload file, read through the store like every record, then for its points."""
    from bench.records.store import load_workload

    return load_workload(path)


def _label_runs(runs: list[Run]) -> None:
    """Short legend labels: device and time of the run, plus the file name where those collide."""
    for run in runs:
        run.label = f"{run.device.label} {run.record.when}"
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
        keys = sorted({(s.backend, s.context) for s in run.interactive_steps()}, key=lambda k: (k[1], k[0]))
        for backend, context in keys:
            steps = sorted((s for s in run.interactive_steps() if s.backend == backend and s.context == context),
                           key=lambda s: s.batch)
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

def measured_peak(record: RunRecord) -> tuple[float, str] | None:
    """The measured matmul TFLOP/s for the run's dtype that the run carries (`ceilings.measured_tflops`),
    with where it came from; None when the run had no peak file."""
    tflops = record.ceilings.measured_tflops
    if tflops is None:
        return None
    source = (record.peak_file or {}).get("file")
    return tflops, f"measured peak recorded in the run{f' (from {Path(source).name})' if source else ''}"


def _peak_from_files(run: Run, peaks: list[tuple[Path, PeakRecord]]) -> tuple[float, str] | None:
    """A peak file of the same device (by catalog key or name) gives the run its measured FLOP ceiling."""
    for path, peak in peaks:
        if not {peak.device.key, peak.device.name} & {run.device.key, run.device.display_name} - {None}:
            continue
        if (value := peak.measured_tflops.get(PEAK_DTYPE.get(run.dtype, run.dtype))) is not None:
            return value, f"measured peak from {path.name}"
    return None


def ceilings(run: Run) -> Ceilings:
    """Spec-sheet and measured ceilings for the run's dtype, with a note for each one that is missing."""
    spec = run.device.spec or {}
    peak_key = PEAK_DTYPE.get(run.dtype, run.dtype)
    recorded = run.record.ceilings
    spec_tflops, spec_gbps = recorded.spec_tflops, recorded.spec_gbps
    measured_tflops = run.measured_peak[0] if run.measured_peak else None
    measured_gbps = recorded.measured_gbps
    notes = []
    if not spec:
        notes.append(f"spec-sheet ceilings unknown: {run.device.display_name} is not in the device catalog")
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
    return Ceilings(peak_key, spec_tflops, spec_gbps, measured_tflops, measured_gbps, tuple(notes))

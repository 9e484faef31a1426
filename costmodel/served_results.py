"""Served results: what a serving engine delivered on real hardware, read into WorkloadPoint(source="served").

Formats are told apart by content (the file's first character, then its keys), never by the file name:
the engines' own result files (vLLM, SGLang, AIPerf, llama.cpp: costmodel/served_engines.py), and these two,
which are already per GPU:

1. CSV, one row per (hardware, model, precision, TP, ISL, OSL, concurrency):
       hardware, model, precision, tp, isl, osl, concurrency,
       tokens_per_s_per_gpu_total, tokens_per_s_per_gpu_output, median_interactivity
   plus source (or url): where the figures were published, or the run that made them; a row without one
   is refused. Optional: tokens_per_s_per_gpu_input, engine, note. Total tokens/s per GPU is required; output tokens/s and interactivity (tokens/s per user) may be left empty where they were not
   published (a row without interactivity cannot be placed on a frontier and is reported as such).

2. InferenceX's per-configuration result (SemiAnalysisAI/InferenceX, utils/process_result.py writes one
   object per configuration; utils/collect_results.py gathers them into a JSON list): a JSON object or a
   list of them with the fields
       hw, model, precision, isl, osl, conc, tp (or, multi-node, decode_tp), tput_per_gpu,
       output_tput_per_gpu, input_tput_per_gpu, median_intvty (= 1000 / median TPOT in ms),
       median_ttft, median_e2el (seconds), framework, ...
   Interactivity is `median_intvty`, else 1 / `median_tpot` (seconds), else absent.

Hardware names map to the price catalog's keys (costmodel/data/prices.json): 'H200', 'h200-sxm' and
InferenceX runner names such as 'h200-cw_0' or 'b200-trt' all name the h200 / b200; an unknown name is an
error, never a guess (an H200 NVL or H100 PCIe is another product with another price). Every problem is
one CostInputError naming the file and the row (CSV: 1-based data row; JSON: index in the list).

An engine's file gives whole-run totals and does not say on what hardware, how many GPUs or at what
precision it ran: the user gives those (ServedGiven), and a file that lacks one is refused with its name.
Its point is then per GPU (total / GPUs), at the median interactivity 1000 / median TPOT ms, with ISL and OSL
the token totals per completed request.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from dataclasses import dataclass, field

from costmodel.catalog import devices as catalog_devices
from costmodel.input_errors import CostInputError
from costmodel.numbers import parse_number
from costmodel.served_engines import FORMATS, EngineRun, engine_runs, read_jsonl
from costmodel.served_names import hardware_key, model_key, precision_key
from costmodel.served_readings import ServedReading, is_readings_csv, read_readings
from costmodel.step import tokens_per_s_per_user
from costmodel.workload_economics import WorkloadPoint, workload_label

REQUIRED_COLUMNS = ("hardware", "model", "precision", "tp", "isl", "osl", "concurrency",
                    "tokens_per_s_per_gpu_total", "tokens_per_s_per_gpu_output", "median_interactivity")
OPTIONAL_COLUMNS = ("tokens_per_s_per_gpu_input", "engine", "source", "url", "note", "date")
# figures a row may leave empty (not published); every other required column needs a value
MAY_BE_EMPTY = ("tokens_per_s_per_gpu_output", "median_interactivity", "tokens_per_s_per_gpu_input")

# --- figures --------------------------------------------------------------------------------------------

def _number(where: str, name: str, value, *, optional: bool) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return None
        raise CostInputError(f"{where}: {name} is empty (a required figure)")
    x = parse_number(f"{where}: {name}", value)
    if x <= 0:
        raise CostInputError(f"{where}: {name} must be a positive number, got {value!r}")
    return x


def _integer(where: str, name: str, value) -> int:
    x = _number(where, name, value, optional=False)
    if not float(x).is_integer():
        raise CostInputError(f"{where}: {name} must be a whole number, got {value!r}")
    return int(x)


def _text(where: str, name: str, value, *, optional: bool = False) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return ""
        raise CostInputError(f"{where}: {name} is empty")
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise CostInputError(f"{where}: {name} must be text, got {value!r}")
    return str(value).strip()


def _hardware(where: str, value) -> str:
    name = _text(where, "hardware", value)
    key = hardware_key(name)
    if key is None or key not in catalog_devices():
        raise CostInputError(f"{where}: unknown hardware {name!r}; known: {', '.join(catalog_devices())} "
                             f"(or spellings like H200, h200-sxm, b200-trt)")
    return key


def _point(where: str, *, hardware, model, precision, tp, isl, osl, conc, total, output, inp, interactivity,
           ttft=None, e2e=None, engine="", reference="", note="") -> WorkloadPoint:
    device = _hardware(where, hardware)
    model_name = model_key(_text(where, "model", model))
    prec = precision_key(_text(where, "precision", precision))
    isl_, osl_ = _integer(where, "isl", isl), _integer(where, "osl", osl)
    label = " ".join(x for x in (device, prec, workload_label(isl_, osl_), engine,
                                 f"TP{_integer(where, 'tp', tp)}") if x)
    return WorkloadPoint(
        device=device, model=model_name, precision=prec, isl=isl_, osl=osl_,
        concurrency=_integer(where, "concurrency", conc), engine_model="served", source="served",
        tp=_integer(where, "tp", tp), total_tokens_per_s=total, output_tokens_per_s=output, input_tokens_per_s=inp,
        interactivity=interactivity, ttft_s=ttft, e2e_latency_s=e2e, label=label, note=note, reference=reference)


# --- CSV ------------------------------------------------------------------------------------------------

def _source(where: str, row: dict) -> str:
    """Where a row's figures come from, with its date where given; a row without one is refused (a figure
    nobody can trace is not compared with anything)."""
    text = _text(where, "source", row.get("source") or row.get("url"), optional=True)
    if not text:
        raise CostInputError(f"{where}: no source: every served row says where its figures were published "
                             f"(a URL) or which run made them (column source or url)")
    date = _text(where, "date", row.get("date"), optional=True)
    return f"{text} ({date})" if date else text

def _read_csv(text: str, name: str) -> list[WorkloadPoint]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise CostInputError(f"served results {name}: no header row")
    reader.fieldnames = header
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise CostInputError(f"served results {name}: missing column(s) {', '.join(missing)} (a CSV needs: "
                             f"{', '.join(REQUIRED_COLUMNS)})")
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        raise CostInputError(f"served results {name}: unknown column(s) {', '.join(unknown)}; optional columns "
                             f"are: {', '.join(OPTIONAL_COLUMNS)}")
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise CostInputError(f"served results {name}: column(s) {', '.join(dupes)} given twice")
    points = []
    for n, row in enumerate(reader, 1):
        where = f"served results {name}: row {n} (line {reader.line_num})"
        if None in row:
            raise CostInputError(f"{where}: more fields than the header has columns")
        if any(v is None for v in row.values()):
            raise CostInputError(f"{where}: fewer fields than the header has columns")
        figures = {c: _number(where, c, row.get(c), optional=c in MAY_BE_EMPTY) for c in
                   ("tokens_per_s_per_gpu_total", "tokens_per_s_per_gpu_output", "tokens_per_s_per_gpu_input",
                    "median_interactivity")}
        points.append(_point(
            where, hardware=row["hardware"], model=row["model"], precision=row["precision"], tp=row["tp"],
            isl=row["isl"], osl=row["osl"], conc=row["concurrency"], total=figures["tokens_per_s_per_gpu_total"],
            output=figures["tokens_per_s_per_gpu_output"], inp=figures["tokens_per_s_per_gpu_input"],
            interactivity=figures["median_interactivity"], engine=_text(where, "engine", row.get("engine"),
                                                                         optional=True),
            reference=_source(where, row),
            note=_text(where, "note", row.get("note"), optional=True)))
    return points


# --- InferenceX JSON ------------------------------------------------------------------------------------

IX_REQUIRED = ("hw", "model", "precision", "isl", "osl", "conc", "tput_per_gpu")


def _ix_entry(entry, where: str) -> WorkloadPoint:
    if not isinstance(entry, dict):
        raise CostInputError(f"{where}: must be an object (an InferenceX result), got {type(entry).__name__}")
    missing = [k for k in IX_REQUIRED if k not in entry]
    if "tp" not in entry and "decode_tp" not in entry:
        missing.append("tp")
    if missing:
        raise CostInputError(f"{where}: missing field(s) {', '.join(missing)} (an InferenceX result has hw, "
                             f"model, precision, isl, osl, conc, tp, tput_per_gpu, output_tput_per_gpu, "
                             f"median_intvty)")
    interactivity = _number(where, "median_intvty", entry.get("median_intvty"), optional=True)
    if interactivity is None and entry.get("median_tpot") is not None:
        interactivity = tokens_per_s_per_user(_number(where, "median_tpot", entry["median_tpot"], optional=False))
    notes = []
    if entry.get("is_multinode") or entry.get("disagg") in (True, "true", "True"):
        notes.append(f"disaggregated: {entry.get('num_prefill_gpu', '?')} prefill + "
                     f"{entry.get('num_decode_gpu', '?')} decode GPUs; output tokens/s per decode GPU")
    if entry.get("spec_decoding") not in (None, "", "none", "None", False):
        notes.append(f"speculative decoding: {entry['spec_decoding']}")
    if entry.get("date"):
        notes.append(f"date {entry['date']}")
    return _point(
        where, hardware=entry["hw"], model=entry["model"], precision=entry["precision"],
        tp=entry.get("tp", entry.get("decode_tp")), isl=entry["isl"], osl=entry["osl"], conc=entry["conc"],
        total=_number(where, "tput_per_gpu", entry["tput_per_gpu"], optional=False),
        output=_number(where, "output_tput_per_gpu", entry.get("output_tput_per_gpu"), optional=True),
        inp=_number(where, "input_tput_per_gpu", entry.get("input_tput_per_gpu"), optional=True),
        interactivity=interactivity,
        ttft=_number(where, "median_ttft", entry.get("median_ttft"), optional=True),
        e2e=_number(where, "median_e2el", entry.get("median_e2el"), optional=True),
        engine=_text(where, "framework", entry.get("framework"), optional=True),
        reference=_text(where, "run_url", entry.get("run_url"), optional=True) or "InferenceX result file",
        note="; ".join(notes))


def _parse_json(text: str, name: str):
    """The file's JSON: one document, else (SGLang's appended results, llama-batched-bench) one per line."""
    try:
        return json.loads(text), False
    except json.JSONDecodeError as e:
        if len([ln for ln in text.splitlines() if ln.strip()]) > 1:
            return read_jsonl(text, name), True
        raise CostInputError(f"served results {name} is not valid JSON: {e.msg} at line {e.lineno}") from None


def _read_inferencex(data, name: str) -> list[WorkloadPoint]:
    if isinstance(data, dict):
        return [_ix_entry(data, f"served results {name}")]
    if not isinstance(data, list):
        raise CostInputError(f"served results {name}: expected an InferenceX result object or a list of them")
    return [_ix_entry(e, f"served results {name}: entry [{i}]") for i, e in enumerate(data)]


@dataclass(frozen=True)
class ServedGiven:
    """What the user says of an engine's result file that the file does not hold (None: not given)."""

    hardware: str | None = None
    gpus: int | None = None
    model: str | None = None
    precision: str | None = None

    def flags(self) -> list[str]:
        return [f"--{k}" for k in ("hardware", "gpus", "model", "precision") if getattr(self, k) is not None]


@dataclass
class ServedFile:
    """A served-results file read: its format, its served points and, for llama-bench, the single-phase
    tests (prompt only or generation only) that are step rates, not served workloads."""

    path: str
    format: str  # a key of costmodel.served_engines.FORMATS, or "inferencex" / "csv"
    points: list[WorkloadPoint]
    runs: list[EngineRun] = field(default_factory=list)  # the engine's own records, where it is an engine file
    step_rates: list[EngineRun] = field(default_factory=list)
    given: ServedGiven = field(default_factory=ServedGiven)
    readings: list[ServedReading] = field(default_factory=list)  # published figures that are not runs

    @property
    def format_name(self) -> str:
        return {"inferencex": "InferenceX per-configuration result (JSON)", "csv": "tokenbench served CSV",
                "readings": "published frontier readings and claims (CSV)"}.get(self.format) or FORMATS[self.format]


def _engine_point(run: EngineRun, given: ServedGiven, name: str) -> WorkloadPoint:
    missing = [flag for flag, have in (("--hardware H", given.hardware), ("--gpus N", given.gpus),
                                       ("--model M", given.model or run.model), ("--precision P", given.precision))
               if have is None or have == ""]
    if missing:
        raise CostInputError(f"served results {name} ({FORMATS[run.format]}) does not say its "
                             f"{', '.join(m.split()[0][2:] for m in missing)}: give {' '.join(missing)}")
    if isinstance(given.gpus, bool) or not isinstance(given.gpus, int) or given.gpus < 1:
        raise CostInputError(f"--gpus must be a positive whole number, got {given.gpus!r}")
    if run.isl is None or run.osl is None or run.concurrency is None:
        what = [k for k, v in (("prompt tokens", run.isl), ("output tokens", run.osl),
                               ("concurrency", run.concurrency)) if v is None]
        raise CostInputError(f"{run.where}: no {', '.join(what)} in the file: cannot place the run as a workload")
    g = given.gpus

    def per_gpu(x: float | None) -> float | None:
        return None if x is None else x / g

    notes = [n for n in (run.note, f"{g} GPUs as given (--gpus); figures are the run's totals / {g}") if n]
    if given.model and run.model and model_key(given.model) != model_key(run.model):
        notes.append(f"model as given (--model); the file names {run.model}")
    return _point(run.where, hardware=given.hardware, model=given.model or run.model, precision=given.precision,
                  tp=g, isl=run.isl, osl=run.osl, conc=run.concurrency, total=per_gpu(run.total_tokens_per_s),
                  output=per_gpu(run.output_tokens_per_s), inp=per_gpu(run.input_tokens_per_s),
                  interactivity=run.interactivity,
                  ttft=None if run.median_ttft_ms is None else run.median_ttft_ms / 1000.0,
                  e2e=None if run.median_e2e_ms is None else run.median_e2e_ms / 1000.0,
                  engine=run.engine or run.format, reference=f"{FORMATS[run.format]}: {name}", note="; ".join(notes))


def read_served_file(path: str | Path, given: ServedGiven | None = None) -> ServedFile:
    """Every served point in the file, in file order, whatever its format; any bad row is a CostInputError
    naming file and row. `given` fills what an engine's file does not hold; for the per-GPU formats (CSV,
    InferenceX), whose rows name their hardware and GPUs, giving any of it is an error."""
    given = given or ServedGiven()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CostInputError(f"served results file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CostInputError(f"cannot read served results {p}: {getattr(e, 'strerror', None) or e}") from None
    if not text.strip():
        raise CostInputError(f"served results {p} is empty")
    name = str(p)
    if is_readings_csv(text):
        if given.flags():
            raise CostInputError(f"served readings {name} name their hardware and model in every row: "
                                 f"{', '.join(given.flags())} is for an engine's own result file")
        return ServedFile(path=name, format="readings", points=[], readings=read_readings(text, name))
    if text.lstrip()[0] not in "[{":
        fmt, points, runs = "csv", _read_csv(text, name), []
    else:
        data, jsonl = _parse_json(text, name)
        runs = engine_runs(data, name, jsonl=jsonl)
        if runs is None:
            fmt, points, runs = "inferencex", _read_inferencex(data, name), []
        else:
            fmt = runs[0].format
            if any(r.format != fmt for r in runs):
                raise CostInputError(f"served results {name} mixes formats: {', '.join(sorted({r.format for r in runs}))}")
    if fmt in ("csv", "inferencex") and given.flags():
        raise CostInputError(f"served results {name} ({'CSV' if fmt == 'csv' else 'InferenceX JSON'}) names its "
                             f"hardware, GPUs, model and precision in every row: {', '.join(given.flags())} "
                             f"is for an engine's own result file")
    steps = [r for r in runs if not (r.isl and r.osl)]
    if fmt not in ("csv", "inferencex"):
        points = [_engine_point(r, given, name) for r in runs if r.isl and r.osl]
    if not points and not steps:
        raise CostInputError(f"served results {p} has no rows")
    return ServedFile(path=name, format=fmt, points=points, runs=runs, step_rates=steps, given=given)


def read_served(path: str | Path, given: ServedGiven | None = None) -> list[WorkloadPoint]:
    """The served workload points of a file (read_served_file); a file holding step rates that are no served
    workload (llama-bench's prompt-only or generation-only tests) is refused, never half read."""
    f = read_served_file(path, given)
    if f.readings:
        raise CostInputError(f"served readings {f.path} are readings on published frontiers and vendor claims, not "
                             f"runs at a concurrency: `tokenbench served` prints them; compare takes served points")
    if f.step_rates:
        raise CostInputError(f"served results {f.path}: {len(f.step_rates)} llama-bench test(s) of prompt only or "
                             f"generation only are step rates, not served workloads (see `tokenbench served`); "
                             f"a comparison needs runs of both (llama-bench -pg, or llama-batched-bench)")
    return f.points


def describe(point: WorkloadPoint) -> str:
    """'h200 deepseek-r1 fp8 1k/1k TP8 concurrency 4' (what a row is, in one phrase)."""
    return f"{point.device} {point.model} {point.precision} {point.workload} TP{point.tp} concurrency " \
           f"{point.concurrency}"

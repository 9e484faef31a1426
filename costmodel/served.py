"""Served results: what a serving engine delivered on real hardware, read into WorkloadPoint(source="served").

Two formats, told apart by the file's first character ('[' or '{': JSON, else CSV):

1. CSV, one row per (hardware, model, precision, TP, ISL, OSL, concurrency):
       hardware, model, precision, tp, isl, osl, concurrency,
       tokens_per_s_per_gpu_total, tokens_per_s_per_gpu_output, median_interactivity
   plus, optionally: tokens_per_s_per_gpu_input, engine, source (or url), note. Total tokens/s per GPU is
   required; output tokens/s and interactivity (tokens/s per user) may be left empty where they were not
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
"""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from costmodel.catalog import devices as catalog_devices
from costmodel.input_errors import CostInputError
from costmodel.numbers import parse_number
from costmodel.step import tokens_per_s_per_user
from costmodel.workload_economics import WorkloadPoint, workload_label

REQUIRED_COLUMNS = ("hardware", "model", "precision", "tp", "isl", "osl", "concurrency",
                    "tokens_per_s_per_gpu_total", "tokens_per_s_per_gpu_output", "median_interactivity")
OPTIONAL_COLUMNS = ("tokens_per_s_per_gpu_input", "engine", "source", "url", "note")
# figures a row may leave empty (not published); every other required column needs a value
MAY_BE_EMPTY = ("tokens_per_s_per_gpu_output", "median_interactivity", "tokens_per_s_per_gpu_input")

# hardware spellings (lower case, separators as '-', vendor words dropped) -> catalog key
HARDWARE_ALIASES = {
    "h100": "h100-sxm", "h100-sxm": "h100-sxm", "h100-sxm5": "h100-sxm", "h100sxm": "h100-sxm",
    "hgx-h100": "h100-sxm", "dgx-h100": "h100-sxm",
    "h200": "h200", "h200-sxm": "h200", "h200sxm": "h200", "hgx-h200": "h200", "dgx-h200": "h200",
    "b200": "b200", "hgx-b200": "b200", "dgx-b200": "b200",
    "b300": "b300", "hgx-b300": "b300", "dgx-b300": "b300",
    "gb200": "gb200", "gb200-nvl72": "gb200",
    "gb300": "gb300", "gb300-nvl72": "gb300",
    "mi300x": "mi300x", "mi325x": "mi325x", "mi355x": "mi355x",
}
VENDOR_WORDS = ("nvidia", "amd", "instinct")
# InferenceX runner names are '<gpu>-<site or engine>[_<index>]' (.github/configs/runners.yaml): these tags
# say where or with what it ran, not which product, so they are dropped. Form factors (nvl, pcie) are not.
RUNNER_TAGS = {"cw", "cr", "nb", "nv", "nvd", "nvs", "trt", "amd", "oci", "tw", "sglang", "vllm", "dynamo"}
PRECISION_ALIASES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32",
                     "float8": "fp8", "nvfp4": "fp4", "mxfp4": "fp4"}


def hardware_key(name: str) -> str | None:
    """The catalog key a hardware name stands for; None when it names no catalog device."""
    text = re.sub(r"[\s_]+", "-", str(name).strip().lower())
    text = re.sub(r"-[0-9]+$", "", text)  # a runner index: h200-cw_0 -> h200-cw
    words = [w for w in text.split("-") if w and w not in VENDOR_WORDS]
    while words:
        joined = "-".join(words)
        if joined in HARDWARE_ALIASES:
            return HARDWARE_ALIASES[joined]
        if words[-1] not in RUNNER_TAGS:
            return None
        words = words[:-1]
    return None


def model_key(name: str) -> str:
    """A model name as tokenbench names models: 'meta-llama/Llama-3.2-1B-Instruct' -> 'llama-3.2-1b'
    (organisation, a 'Meta-' prefix and an '-Instruct' suffix dropped: the same weights' shapes)."""
    text = str(name).strip().lower().rsplit("/", 1)[-1]
    text = re.sub(r"^meta-(?=llama)", "", text)
    return re.sub(r"-(instruct|chat|hf)$", "", text)


def precision_key(name: str) -> str:
    text = str(name).strip().lower()
    return PRECISION_ALIASES.get(text, text)


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
            reference=_text(where, "source", row.get("source") or row.get("url"), optional=True),
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


def _read_json(text: str, name: str) -> list[WorkloadPoint]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CostInputError(f"served results {name} is not valid JSON: {e.msg} at line {e.lineno}") from None
    if isinstance(data, dict):
        return [_ix_entry(data, f"served results {name}")]
    if not isinstance(data, list):
        raise CostInputError(f"served results {name}: expected an InferenceX result object or a list of them")
    return [_ix_entry(e, f"served results {name}: entry [{i}]") for i, e in enumerate(data)]


def read_served(path: str | Path) -> list[WorkloadPoint]:
    """Every served point in the file, in file order; any bad row is a CostInputError naming file and row."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CostInputError(f"served results file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CostInputError(f"cannot read served results {p}: {getattr(e, 'strerror', None) or e}") from None
    if not text.strip():
        raise CostInputError(f"served results {p} is empty")
    points = _read_json(text, str(p)) if text.lstrip()[0] in "[{" else _read_csv(text, str(p))
    if not points:
        raise CostInputError(f"served results {p} has no rows")
    return points


def describe(point: WorkloadPoint) -> str:
    """'h200 deepseek-r1 fp8 1k/1k TP8 concurrency 4' (what a row is, in one phrase)."""
    return f"{point.device} {point.model} {point.precision} {point.workload} TP{point.tp} concurrency " \
           f"{point.concurrency}"

"""How served results name hardware, models and precisions, read as tokenbench's catalog keys (shared by
costmodel/served_results.py and costmodel/served_readings.py)."""
from __future__ import annotations

import re

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
    (organisation, a 'Meta-' prefix and an '-Instruct' suffix dropped: the same weights' shapes). A Hugging
    Face cache path ('/models/models--openai--gpt-oss-120b/snapshots/<hash>/') names its repository."""
    text = str(name).strip().lower()
    cached = re.search(r"models--[^/]+--([^/]+)", text)
    text = cached.group(1) if cached else text.rstrip("/").rsplit("/", 1)[-1]
    text = re.sub(r"^meta-(?=llama)", "", text)
    return re.sub(r"-(instruct|chat|hf)$", "", text)


def precision_key(name: str) -> str:
    text = str(name).strip().lower()
    return PRECISION_ALIASES.get(text, text)

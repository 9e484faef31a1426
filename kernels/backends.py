"""Which function implements each op kind for a backend, and the backend spec the CLI accepts.

A spec is a backend name, optionally with per-kind overrides after '/':
  "torch", "triton", "triton/attention=torch/gemm=torch".
"""
from __future__ import annotations

import importlib

from kernels import activation, attention, gemm, kv_cache, norm, rope

KINDS = ("gemm", "attention", "norm", "rope", "kv_append", "activation")
BACKENDS = ("torch", "triton")

TORCH_IMPLS = {
    "gemm": gemm.torch_linear,
    "attention": attention.torch_sdpa,
    "norm": norm.torch_rmsnorm_residual,
    "rope": rope.torch_rope,
    "kv_append": kv_cache.torch_append,
    "activation": activation.torch_swiglu,
}

# Each Triton module exposes its launcher under this name; imported lazily (Triton is optional).
TRITON_IMPLS = {
    "gemm": ("kernels.triton.gemm", "triton_linear"),
    "attention": ("kernels.triton.attention", "triton_decode_attention"),
    "norm": ("kernels.triton.norm", "triton_rmsnorm_residual"),
    "rope": ("kernels.triton.rope", "triton_rope"),
    "kv_append": ("kernels.triton.kv_cache", "triton_append"),
    "activation": ("kernels.triton.activation", "triton_swiglu"),
}


class BackendError(ValueError):
    """An unknown backend or op kind in a spec, or a backend that cannot run here."""


def implementation(kind: str, backend: str):
    if kind not in KINDS:
        raise BackendError(f"unknown op kind {kind!r}; choose one of: {', '.join(KINDS)}")
    if backend == "torch":
        return TORCH_IMPLS[kind]
    if backend == "triton":
        module_name, attr = TRITON_IMPLS[kind]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise BackendError(f"triton backend unavailable for {kind}: {exc}") from exc
        return getattr(module, attr)
    raise BackendError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")


def parse_backend(spec: str) -> dict[str, str]:
    """'triton/attention=torch' -> {kind: backend} for every kind."""
    base, *overrides = spec.strip().split("/")
    if base not in BACKENDS:
        raise BackendError(f"unknown backend {base!r}; choose one of: {', '.join(BACKENDS)}")
    chosen = {kind: base for kind in KINDS}
    for item in overrides:
        kind, _, backend = item.partition("=")
        if kind not in KINDS or backend not in BACKENDS:
            raise BackendError(
                f"bad backend override {item!r} in {spec!r}: expected KIND=BACKEND with KIND in "
                f"{', '.join(KINDS)} and BACKEND in {', '.join(BACKENDS)}"
            )
        chosen[kind] = backend
    return chosen

"""bf16 / fp16 decode GEMMs on a CPU without bf16 instructions, keeping the weights' half bytes.

torch's bf16 matmul on such a CPU (an AMD EPYC with AVX2 only) ran far below its fp32 GEMV, and oneDNN's
packed bf16 linear returned NaN there, so a bf16 model read its weights slower than the same model in fp32.
Two ways round it, both candidates of the chooser in kernels/cpu_gemm.py (checked against float64, timed,
the faster kept per shape class):

- `WidenedBlocks`: rows of W widened to float32 a block at a time into a reused buffer sized to stay in
  L2, then multiplied by the fp32 BLAS; torch only, so it runs wherever torch does.
- `widened_kernel`: kernels/cpu_widen_gemm.c, widening in registers and FMA-ing as llama.cpp's AVX2 path
  does; compiled with the system's C compiler at first use (about a second: no torch headers) and called
  through ctypes, its rows split over OpenMP threads (torch's own libgomp, already loaded, so no second
  thread team). No compiler, no AVX2, or a failed build: the candidate is not offered, and
  `kernel_status()` says why.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("cpu_widen_gemm.c")
FLAGS = ("-O3", "-mavx2", "-mfma", "-mf16c", "-fopenmp", "-shared", "-fPIC")
BUILD_TIMEOUT_S = 120
_ENTRY = {torch.bfloat16: "gemm_bf16_par", torch.float16: "gemm_f16_par"}


class WidenedBlocks:
    """W's rows widened to float32 `block_bytes` per thread at a time, then torch.bmm over the threads'
    blocks (the fp32 BLAS ran an M = 1 mm on one thread), y built transposed so each block's rows land
    contiguous."""

    def __init__(self, block_bytes: int):
        self.block_bytes = block_bytes
        self._buffers: dict = {}

    def __call__(self, x, w, b):
        n, k = w.shape
        m, threads = x.shape[0], torch.get_num_threads()
        rows = max(1, self.block_bytes // (4 * k))
        chunk = rows * threads
        buf = self._buffers.get((chunk, k))
        if buf is None:
            buf = self._buffers[(chunk, k)] = torch.empty(chunk, k)
        x32 = x.float()
        xt = x32.T.expand(threads, -1, -1)
        yt = torch.empty(n, m)
        whole = n - n % chunk
        for i in range(0, whole, chunk):
            buf.copy_(w[i:i + chunk])
            torch.bmm(buf.view(threads, rows, k), xt, out=yt[i:i + chunk].view(threads, rows, m))
        if whole < n:
            rest = buf[:n - whole]
            rest.copy_(w[whole:])
            torch.mm(rest, x32.T, out=yt[whole:])
        y = yt.T.to(x.dtype, memory_format=torch.contiguous_format)
        return y if b is None else y + b


_LIB = None
_STATUS = "not built yet"


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "tokenbench"


def _build() -> str | None:
    """Path of the compiled library, building it if this source + flags has not been built; None (and
    _STATUS says why) where it cannot be."""
    global _STATUS
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        _STATUS = f"CPU capability {torch.backends.cpu.get_cpu_capability()}: no AVX2/FMA"
        return None
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        _STATUS = "no C compiler (cc / gcc) on PATH"
        return None
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode()).hexdigest()[:16]
    try:
        out_dir = _cache_dir()
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        out_dir = Path(tempfile.gettempdir()) / "tokenbench"
        out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / f"cpu_widen_gemm-{digest}.so"
    if lib.exists():
        return str(lib)
    partial = out_dir / f".{lib.name}.{os.getpid()}"  # renamed into place: parallel builds never clash
    try:
        done = subprocess.run([cc, *FLAGS, "-o", str(partial), str(SOURCE)], capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _STATUS = f"build failed: {exc}"
        return None
    if done.returncode != 0:
        _STATUS = f"build failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
        return None
    os.replace(partial, lib)
    return str(lib)


def _library():
    global _LIB, _STATUS
    if _LIB is None and _STATUS == "not built yet":
        path = _build()
        if path is not None:
            lib = ctypes.CDLL(path)
            for name in _ENTRY.values():
                fn = getattr(lib, name)
                fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_long] * 3 + [ctypes.c_int]
                fn.restype = None
            _LIB, _STATUS = lib, f"built ({Path(path).name})"
    return _LIB


def kernel_status() -> str:
    """Why the compiled candidate is or is not offered here."""
    _library()
    return _STATUS


def kernel_available() -> bool:
    return _library() is not None


def widened_kernel(x, w, b):
    """y = x @ W^T (+ b) with W bf16 or fp16 widened in registers, its rows split over torch's threads."""
    fn = getattr(_library(), _ENTRY[w.dtype])
    m, k = x.shape
    x32 = x.float().contiguous()
    w = w.contiguous()
    y = torch.empty(m, w.shape[0])
    fn(x32.data_ptr(), w.data_ptr(), y.data_ptr(), m, k, w.shape[0], torch.get_num_threads())
    y = y.to(x.dtype)
    return y if b is None else y + b

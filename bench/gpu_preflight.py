"""The GPU check's first step: what this machine is, and whether Triton can build and launch a kernel here.

    python -m bench.gpu_preflight FACTS.json

Prints nvidia-smi, versions and the detected device; writes FACTS.json with {"triton_ok", "triton_reason",
"slug", ...} for the steps after it (a Triton that cannot build its launcher, e.g. no C compiler or CUDA
headers, makes the check skip its Triton steps with that reason instead of failing them one by one).
"""
from __future__ import annotations

import json
import subprocess
import sys


def triton_smoke() -> tuple:
    """(ok, reason): compile and launch one trivial kernel on the GPU and check what it wrote."""
    try:
        import torch
        import triton
        import triton.language as tl
    except Exception as exc:  # noqa: BLE001 - any import failure is the reason
        return False, f"import failed: {type(exc).__name__}: {exc}"
    if not torch.cuda.is_available():
        return False, "no CUDA device (Triton is timed only on CUDA)"

    @triton.jit
    def _add_one(x_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        tl.store(x_ptr + offs, tl.load(x_ptr + offs, mask=mask) + 1.0, mask=mask)

    try:
        x = torch.rand(1000, device="cuda")
        want = x.double() + 1.0
        _add_one[(triton.cdiv(1000, 256),)](x, 1000, BLOCK=256)
        torch.cuda.synchronize()
        err = (x.double() - want).abs().max().item()
    except Exception as exc:  # noqa: BLE001 - a launcher that cannot build raises from deep inside Triton
        return False, f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else ''}"
    if err > 1e-6:
        return False, f"trivial kernel wrote wrong values (max error {err:.3g})"
    return True, None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    facts = {}
    try:
        print(subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=15).stdout)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"nvidia-smi: not available ({exc})")
    import torch

    print(sys.version)
    print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
    try:
        import triton

        print("triton", triton.__version__)
        facts["triton"] = triton.__version__
    except Exception as exc:  # noqa: BLE001
        print("triton: not importable:", exc)
    from bench.configs.device_catalog import detect
    from bench.records.store import slug

    device = detect("auto")
    facts.update(device=device.name, key=device.key, kind=device.kind, slug=slug(device.key or device.name),
                 nvml_uuid=device.details.get("uuid"))
    print(json.dumps(device.to_dict(), indent=1, default=str))
    facts["triton_ok"], facts["triton_reason"] = triton_smoke()
    print("triton launch:", "ok" if facts["triton_ok"] else f"NOT OK: {facts['triton_reason']}")
    if argv:
        with open(argv[0], "w") as f:
            json.dump(facts, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

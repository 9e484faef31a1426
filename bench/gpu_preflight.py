"""The GPU check's first step: what this machine is, which packages the steps need are installed, and whether
Triton can build and launch a kernel here.

    python -m bench.gpu_preflight FACTS.json [--cpu-rehearsal]

Prints nvidia-smi, versions and the detected device; writes FACTS.json with {"cuda", "packages", "triton_ok",
"triton_reason", "slug", "device", ...} for the steps after it. Package versions are read from their installed
metadata (importlib.metadata), so learning a version imports nothing. FACTS.json is written as soon as the
packages are known and again at the end, so a preflight that dies half-way still leaves what it learned.

Strict: with no CUDA device it exits NO_CUDA_EXIT (2) after one line saying why, and the check stops there,
instead of measuring the host CPU for the whole lease; --cpu-rehearsal (the CPU tests and rehearsals) goes on.
A Triton that cannot build its launcher (no C compiler or CUDA headers) makes the check skip its Triton steps
with that reason instead of failing them one by one.
"""
from __future__ import annotations

import json
import subprocess
import sys

from bench.gpu_check_plan import CHECK_PACKAGES

NO_CUDA_EXIT = 2


def package_versions(names=CHECK_PACKAGES) -> dict:
    """{distribution name: installed version or None}, from metadata alone: nothing is imported."""
    from importlib import metadata

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


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


def _write(path: str | None, facts: dict) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(facts, f, indent=1)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    rehearsal = "--cpu-rehearsal" in argv
    paths = [a for a in argv if a != "--cpu-rehearsal"]
    path = paths[0] if paths else None
    facts = {"packages": package_versions(), "rehearsal": rehearsal}
    print("packages:", ", ".join(f"{k} {v or 'MISSING'}" for k, v in facts["packages"].items()))
    _write(path, facts)
    try:
        print(subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=15).stdout)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"nvidia-smi: not available ({exc})")
    print(sys.version)
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a torch that does not import: nothing can be measured
        facts.update(cuda=False, cuda_reason=f"torch does not import ({type(exc).__name__}: {exc})")
        _write(path, facts)
        print(f"tokenbench: error: {facts['cuda_reason']}", file=sys.stderr)
        return NO_CUDA_EXIT
    facts["cuda"] = torch.cuda.is_available()
    print("torch", torch.__version__, "cuda", torch.version.cuda, "available", facts["cuda"])
    if not facts["cuda"]:
        facts["cuda_reason"] = (f"no CUDA device: torch {torch.__version__} (CUDA build "
                                f"{torch.version.cuda or 'none'}) sees none")
        if not rehearsal:
            _write(path, facts)
            print(f"tokenbench: error: {facts['cuda_reason']}; the check stops here (--cpu-rehearsal runs it "
                  f"on a CPU)", file=sys.stderr)
            return NO_CUDA_EXIT
    from bench.configs.device_catalog import detect
    from bench.records.store import slug

    device = detect("auto")
    facts.update(device=device.name, key=device.key, kind=device.kind, slug=slug(device.key or device.name),
                 nvml_uuid=device.details.get("uuid"))
    print(json.dumps(device.to_dict(), indent=1, default=str))
    _write(path, facts)
    facts["triton_ok"], facts["triton_reason"] = triton_smoke()
    print("triton launch:", "ok" if facts["triton_ok"] else f"NOT OK: {facts['triton_reason']}")
    _write(path, facts)
    return 0


if __name__ == "__main__":
    sys.exit(main())

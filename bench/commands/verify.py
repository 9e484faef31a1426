"""Check every op and the decoder layer against the float64 reference on fresh random inputs, for each
backend, on any device (Triton on a CPU runs under its interpreter), and print a pass/fail table."""
from __future__ import annotations

import os
import sys

from bench.configs import device_catalog
from bench.errors import UserError
from bench.configs.model_configs import MODELS, get_model
from bench.parsing import choice, positive_int_list
from kernels.backends import parse_backend
from kernels.dtypes import TORCH_DTYPES


def add_arguments(p):
    p.add_argument("--model", default="tiny", help=f"one of: {', '.join(MODELS)}, or the path of a Hugging Face config.json (or of its folder) (default tiny)")
    p.add_argument("--backend", default="torch", help="comma list of backends (torch, triton, mixes)")
    p.add_argument("--batch", default="1,3", help="comma list of batch sizes (default 1,3)")
    p.add_argument("--context", default="37", help="comma list of context lengths (default 37)")
    p.add_argument("--dtype", default=None, help="bf16 | fp16 | fp32 (default fp32 on CPU, bf16 on GPU)")
    p.add_argument("--device", default="auto", help="auto | cuda | cpu")


def main(args) -> int:
    from rich.console import Console
    from rich.table import Table

    device = device_catalog.detect(args.device)
    model = get_model(args.model)
    from bench.configs.model_configs import refuse_moe

    refuse_moe(model, "`tokenbench verify`")
    dtype = choice(args.dtype or ("bf16" if device.kind == "cuda" else "fp32"), tuple(TORCH_DTYPES), "dtype")
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    if not backends:
        raise UserError("--backend is empty")
    uses_triton = any("triton" in parse_backend(b).values() for b in backends)
    if uses_triton and device.kind == "cpu":
        if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
            raise UserError("set TRITON_INTERPRET=1 before starting to verify Triton kernels on a CPU")
        os.environ["TRITON_INTERPRET"] = "1"  # read when the kernels are defined, i.e. on first import
        if dtype == "bf16":
            raise UserError("bf16 Triton kernels cannot be verified on a CPU: the interpreter's bf16 dot is "
                            "wrong; use --dtype fp16 or fp32, and check bf16 on a GPU")
    from bench.sweeps.decode_sweep import RunPlan, combo_skip_reason, verify_sweep

    plan = RunPlan(model=model, batches=positive_int_list(args.batch, "--batch"),
                   contexts=positive_int_list(args.context, "--context"), dtype=dtype, backends=backends)
    for batch in plan.batches:  # before anything is allocated, as `run` does: a host allocation beyond RAM
        for context in plan.contexts:  # can succeed and then get the process killed when it is filled
            if why := combo_skip_reason(plan, device, batch, context):
                raise UserError(f"cannot verify {model.name} {dtype} at batch {batch}, context {context} here: {why}")
    progress = Console(stderr=True)
    table = Table(title=f"verify: {model.name} {dtype} on {device.name}"
                        + (" (Triton interpreter)" if uses_triton and device.kind == "cpu" else ""))
    for col in ("op", "batch", "ctx", "backend", "rel error", "tolerance", "result"):
        table.add_column(col)
    failures, shown = 0, None
    for case, batch, context, backend, c in verify_sweep(plan, device):
        if (batch, context) != shown:  # a large model's checks take minutes: say where it is
            shown = (batch, context)
            progress.print(f"verify: batch {batch}, context {context} ...", highlight=False)
        failures += not c.ok
        table.add_row(case.name, str(batch), str(context), backend, f"{c.error:.2e}",
                      f"{c.tolerance:.0e}", "[green]pass[/]" if c.ok else f"[red]FAIL {c.reason}[/]")
    console = Console(width=None if sys.stdout.isatty() else 150)
    console.print(table)
    console.print(f"{failures} failed" if failures else "all passed")
    return 1 if failures else 0

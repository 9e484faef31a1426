"""Peer benchmark with llama.cpp beside tokenbench and transformers, on the same random weights:

    python -m bench.sweeps.llamacpp_peer --model llama-3.2-1b --context 512 --batch 1,8 --dtype fp32,bf16,fp16

llama.cpp runs through `llama-cpp-python` (pip; it builds llama.cpp from source) on a GGUF of tokenbench's
weights (bench/sweeps/llamacpp_gguf.py), in this process, with torch's thread count. Its step is one
llama_decode of `batch` tokens, one per sequence (its batch API), each sequence holding `context - 1` past
tokens; the new token is dropped from its cache after each step, as the other two sides' are. The three
sides alternate within each round (the order rotates), so on a shared machine the ratios hold where the
absolute figures do not. tokenbench and transformers are checked against float64 as in hf_peer; llama.cpp's
logits are checked against transformers' on a short prompt of the same tokens (its own cache is filled by
its own prefill, so it has no float64 reference of ours to meet), at the tolerance of the two sides'
errors added in quadrature. An optional dependency: without llama_cpp the command says so and exits 2,
and it stays out of `make test`'s pass/fail.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.configs.model_configs import MODELS, ModelConfig
from bench.errors import UserError
from bench.parsing import positive_int, positive_int_list, unique_names
from bench.sweeps import hf_peer
from kernels.dtypes import TOLERANCE, generator, torch_dtype

DTYPES = ("fp32", "bf16", "fp16")
SIDES = ("tokenbench", "transformers", "llama.cpp")
CHECK_PROMPT = 4  # tokens in the prompt llama.cpp and transformers are compared on


@dataclass
class PeerRow:
    """One dtype x batch: tokens/s per round for each side, each side's check, the bandwidth bound."""
    dtype: str
    batch: int
    context: int
    tokens_per_s: dict = field(default_factory=lambda: {s: [] for s in SIDES})
    rel_error: dict = field(default_factory=dict)  # side -> relative error (llama.cpp: against transformers)
    tolerance: dict = field(default_factory=dict)
    bound_tokens_per_s: float = 0.0

    @property
    def valid(self) -> bool:
        return set(self.rel_error) == set(SIDES) and all(
            e == e and e <= self.tolerance[s] for s, e in self.rel_error.items())

    def ratio(self, side: str) -> list[float]:
        """tokenbench / `side`, per round (each round's figures were measured back to back)."""
        return [a / b for a, b in zip(self.tokens_per_s["tokenbench"], self.tokens_per_s[side])]


def llama_cpp_module():
    """The llama_cpp bindings, or None where llama-cpp-python is not installed."""
    try:
        import llama_cpp
    except ImportError:
        return None
    return llama_cpp


class LlamaCppStep:
    """One decode step of llama.cpp over `batch` sequences of `context - 1` past tokens, repeatable."""

    def __init__(self, lib, gguf_path: Path, m: ModelConfig, batch: int, context: int, dtype: torch.dtype,
                 threads: int):
        self.lib, self.batch, self.context, self.vocab = lib, batch, context, m.layer_dims.vocab
        lib.llama_backend_init()
        mp = lib.llama_model_default_params()
        self.model = lib.llama_model_load_from_file(str(gguf_path).encode(), mp)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {gguf_path}")
        cp = lib.llama_context_default_params()
        cp.n_ctx = context * batch
        cp.n_batch = cp.n_ubatch = max(context, batch, CHECK_PROMPT)
        cp.n_seq_max = batch
        cp.kv_unified = True  # every sequence in one cache of n_ctx cells, as n_ctx was sized
        cp.n_threads = cp.n_threads_batch = threads
        kv_type = {torch.float32: lib.GGML_TYPE_F32, torch.float16: lib.GGML_TYPE_F16,
                   torch.bfloat16: getattr(lib, "GGML_TYPE_BF16", 30)}[dtype]
        cp.type_k = cp.type_v = kv_type  # the cache in the run's dtype, as the other sides hold it
        self.ctx = lib.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context")
        self.mem = lib.llama_get_memory(self.ctx)
        self.ubatch = cp.n_batch
        self.lbatch = lib.llama_batch_init(self.ubatch, 0, batch)

    def _decode(self, entries: list[tuple[int, int, int, bool]]):
        """entries: (token, position, sequence, wants logits); raises if llama_decode fails."""
        b = self.lbatch
        b.n_tokens = len(entries)
        for i, (tok, pos, seq, logits) in enumerate(entries):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, pos, 1, logits
            b.seq_id[i][0] = seq
        rc = self.lib.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def _prefill(self, tokens: list[int], seq: int = 0):
        for start in range(0, len(tokens), self.ubatch):
            part = tokens[start:start + self.ubatch]
            last = start + len(part) == len(tokens)
            self._decode([(t, start + i, seq, last and i == len(part) - 1) for i, t in enumerate(part)])

    def logits(self, i: int) -> torch.Tensor:
        ptr = self.lib.llama_get_logits_ith(self.ctx, i)
        return torch.tensor(ptr[:self.vocab], dtype=torch.float64)

    def prompt_logits(self, tokens: list[int]) -> torch.Tensor:
        """The last token's logits after `tokens` from an empty cache (for the check)."""
        self.lib.llama_memory_clear(self.mem, True)
        self._prefill(tokens)
        return self.logits(-1)

    def fill(self, past: list[int], new_tokens: list[int]):
        """Every sequence gets the same `context - 1` past tokens (one prefill, then copied)."""
        self.lib.llama_memory_clear(self.mem, True)
        self._prefill(past)
        for s in range(1, self.batch):
            self.lib.llama_memory_seq_cp(self.mem, 0, s, -1, -1)
        self.new_tokens = new_tokens

    def step(self):
        pos = self.context - 1
        self._decode([(t, pos, s, True) for s, t in enumerate(self.new_tokens)])
        for s in range(self.batch):  # back to context - 1 tokens for the next step
            self.lib.llama_memory_seq_rm(self.mem, s, pos, -1)

    def close(self):
        self.lib.llama_batch_free(self.lbatch)
        self.lib.llama_free(self.ctx)
        self.lib.llama_model_free(self.model)


def _hf_prompt_logits(model, tokens: list[int]) -> torch.Tensor:
    out = model(input_ids=torch.tensor([tokens]), use_cache=False)
    return out.logits[0, -1].double()


def measure(lib, m: ModelConfig, dtype_name: str, batches: list, context: int, rounds: int, steps: int,
            copy_bps: float, workdir: Path, log=print) -> list[PeerRow]:
    from bench.sweeps.llamacpp_gguf import write_gguf

    dtype = torch_dtype(dtype_name)
    model, ours = hf_peer.build_models(m, dtype, "sdpa")
    path = write_gguf(workdir / f"{m.name}-{dtype_name}.gguf", m, ours, context)
    g = generator(23, "cpu")
    rows = []
    with torch.no_grad():
        for batch in batches:
            step = hf_peer.Step(m, model, ours, batch, context, dtype)
            lcpp = LlamaCppStep(lib, path, m, batch, context, dtype, torch.get_num_threads())
            tol = TOLERANCE[dtype_name] * m.layers ** 0.5
            row = PeerRow(dtype_name, batch, context, tolerance={s: tol for s in SIDES})
            row.tolerance["llama.cpp"] = tol * 2 ** 0.5  # two sides' errors, independent
            ref = step.reference()
            for side in SIDES[:2]:
                row.rel_error[side] = hf_peer._rel(getattr(step, side)(), ref)
            del ref
            prompt = torch.randint(0, m.layer_dims.vocab, (CHECK_PROMPT,), generator=g).tolist()
            row.rel_error["llama.cpp"] = hf_peer._rel(lcpp.prompt_logits(prompt), _hf_prompt_logits(model, prompt))
            lcpp.fill(torch.randint(0, m.layer_dims.vocab, (context - 1,), generator=g).tolist(),
                      step.tokens.tolist())
            bytes_per_step = m.decode_weight_bytes(dtype_name) + m.kv_cache_bytes(batch, context, dtype_name)
            row.bound_tokens_per_s = batch * copy_bps / bytes_per_step
            fns = {"tokenbench": step.tokenbench, "transformers": step.transformers, "llama.cpp": lcpp.step}
            for r in range(rounds):
                order = SIDES[r % 3:] + SIDES[:r % 3]  # who goes first rotates
                for side in order:
                    fns[side]()  # warm: allocator, first-call dispatch, the CPU choosers' calibration
                    row.tokens_per_s[side].append(batch / hf_peer._median_step_s(fns[side], steps))
            log(f"  {dtype_name} batch {batch}: done")
            rows.append(row)
            lcpp.close()
            del step, lcpp
            gc.collect()
    del model, ours
    path.unlink()
    gc.collect()
    return rows


def table(rows: list[PeerRow], copy_gbps: float) -> str:
    span = hf_peer._span
    lines = [f"copy bandwidth {copy_gbps:.1f} GB/s (read + write), measured in this run",
             "| dtype | batch | tokenbench tok/s | transformers tok/s | llama.cpp tok/s | tb/hf | tb/llama.cpp "
             "| bound tok/s | tb of bound | check (rel err tb / hf vs float64, llama.cpp vs hf) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tb = r.tokens_per_s["tokenbench"]
        errs = " / ".join(f"{r.rel_error[s]:.1e}" for s in SIDES)
        lines.append(f"| {r.dtype} | {r.batch} | {span(tb)} | {span(r.tokens_per_s['transformers'])} "
                     f"| {span(r.tokens_per_s['llama.cpp'])} | {span(r.ratio('transformers'))} "
                     f"| {span(r.ratio('llama.cpp'))} | {r.bound_tokens_per_s:.1f} "
                     f"| {span([t / r.bound_tokens_per_s for t in tb])} | {'ok' if r.valid else 'FAILED'} ({errs}) |")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, as the tokenbench CLI answers a usage error
        self.exit(2, f"tokenbench: error: {message}\n")


def parse_args(argv):
    p = _Parser(prog="python -m bench.sweeps.llamacpp_peer", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="llama-3.2-1b")
    p.add_argument("--context", default="512")
    p.add_argument("--batch", default="1,8")
    p.add_argument("--dtype", default="fp32,bf16")
    p.add_argument("--rounds", default="3")
    p.add_argument("--steps", default="5", help="timed steps per side per round (their median is the round's)")
    args = p.parse_args(argv)
    if args.model not in MODELS or MODELS[args.model].is_moe:
        dense = ", ".join(k for k, v in MODELS.items() if not v.is_moe)
        raise UserError(f"--model {args.model!r} is not a dense model this benchmark knows; choose one of: {dense}")
    dtypes = unique_names([s.strip() for s in args.dtype.split(",")], "--dtype")
    bad = [t for t in dtypes if t not in DTYPES]
    if bad:
        raise UserError(f"--dtype {bad[0]!r} is not one of: {', '.join(DTYPES)}")
    context = positive_int(args.context, "--context")
    if context < CHECK_PROMPT + 1:
        raise UserError(f"--context must be at least {CHECK_PROMPT + 1}")
    return (MODELS[args.model], dtypes, positive_int_list(args.batch, "--batch"), context,
            positive_int(args.rounds, "--rounds"), positive_int(args.steps, "--steps"))


def run(argv=None, out=sys.stdout, lib=None) -> list[PeerRow]:
    from bench.configs.device_catalog import detect
    from bench.measure.bandwidth import copy_bandwidth
    from bench.report.cpu_paths import lacking_note, paths_table

    model, dtypes, batches, context, rounds, steps = parse_args(argv)
    lib = lib or llama_cpp_module()
    if lib is None:
        raise UserError("llama.cpp is not installed: pip install llama-cpp-python gguf (it builds llama.cpp)")
    device = detect("cpu")
    copy = copy_bandwidth(device)
    print(f"device: {device.name}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"llama-cpp-python {getattr(lib, '__version__', '?')}", file=out)
    t0, rows = time.perf_counter(), []
    with tempfile.TemporaryDirectory(prefix="tokenbench-gguf-") as workdir:
        for dtype in dtypes:
            try:
                rows += measure(lib, model, dtype, batches, context, rounds, steps,
                                copy["measured_copy_gbps"] * 1e9, Path(workdir),
                                log=lambda s: print(s, file=out, flush=True))
            except KeyboardInterrupt:  # keep what was measured
                print("interrupted: the rows below are those measured", file=out)
                break
    print(f"{model.name}, context {context}, {rounds} rounds x {steps} steps, "
          f"{time.perf_counter() - t0:.0f} s", file=out)
    print(table(rows, copy["measured_copy_gbps"]), file=out)
    print(paths_table(), file=out)
    for dtype in dtypes:
        note = lacking_note(dtype)
        if note:
            print(note, file=out)
    return rows


def main(argv=None) -> int:
    try:
        from transformers import LlamaForCausalLM  # noqa: F401
        import gguf  # noqa: F401
    except ImportError as exc:
        print(f"tokenbench: error: the llama.cpp peer benchmark needs {exc.name} "
              "(pip install .[test] llama-cpp-python gguf)", file=sys.stderr)
        return 2
    try:
        run(argv)
    except UserError as exc:
        print(f"tokenbench: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

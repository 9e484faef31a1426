"""Time tokenbench's whole-model decode step beside Hugging Face transformers' on this CPU, on the same
weights and KV cache, alternating A/B each round (on a shared machine only ratios measured that way mean
anything); both sides are checked against a float64 reference first, and the bound is (weights + KV bytes) /
the copy bandwidth measured in the same run. Needs transformers (pip install -e ".[test]")."""
from __future__ import annotations

from bench.errors import UserError
from bench.configs.model_configs import MODELS, get_model
from bench.parsing import choice, positive_int, positive_int_list, unique_names
from bench.sweeps import hf_peer


def add_arguments(p):
    p.add_argument("--model", default="llama-3.2-1b",
                   help="a dense model of `tokenbench models`, or a config.json path (default llama-3.2-1b)")
    p.add_argument("--context", default="512", help="tokens in the KV cache, the new one included (default 512)")
    p.add_argument("--batch", default="1,8", help="comma list of batch sizes (default 1,8)")
    p.add_argument("--dtype", default="fp32,bf16", help="comma list of fp32, bf16 (default both)")
    p.add_argument("--rounds", default="3", help="A/B rounds, each side timed once a round (default 3)")
    p.add_argument("--steps", default="5", help="timed steps per side per round; their median is the round's")
    p.add_argument("--hf-attention", default="sdpa", help="transformers' attention: sdpa | eager (default sdpa)")


def main(args) -> int:
    model = get_model(args.model)  # a catalog name or a config.json path; an unknown one is refused
    if model.is_moe or model.unmodelled_features():
        dense = ", ".join(k for k, v in MODELS.items() if not v.is_moe and not v.unmodelled_features())
        raise UserError(f"--model {args.model!r} is not a dense model this benchmark knows; choose one of: {dense}")
    dtypes = unique_names([s.strip() for s in args.dtype.split(",")], "--dtype")
    bad = [t for t in dtypes if t not in hf_peer.DTYPES]
    if bad:
        raise UserError(f"--dtype {bad[0]!r} is not one of: {', '.join(hf_peer.DTYPES)}")
    context = positive_int(args.context, "--context")
    if context < 2:
        raise UserError("--context must be at least 2 (a past token and the new one)")
    attention = choice(args.hf_attention, ("sdpa", "eager"), "hf-attention")
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise UserError("the peer benchmark needs transformers (pip install -e \".[test]\")") from None
    plan = hf_peer.PeerPlan(model, dtypes, positive_int_list(args.batch, "--batch"), context,
                            positive_int(args.rounds, "--rounds"), positive_int(args.steps, "--steps"), attention)
    result = hf_peer.run(plan, say=lambda line: print(line, flush=True))
    print(hf_peer.summary(plan, result))
    print(hf_peer.table(result.rows, result.copy_gbps))
    print(hf_peer.calibration_table())
    return 0

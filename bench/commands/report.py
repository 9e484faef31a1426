"""Turn result files into plots and a page: roofline per device, throughput vs interactivity with its Pareto
frontier, cost per token, each op's efficiency, and side-by-side tables. Writes PNGs, report.md and a
self-contained report.html (the PNGs embedded).

    tokenbench report results/a.json results/b.json --out reports/ab
    tokenbench report results/            # every result file in the folder
"""
from __future__ import annotations

import time
from pathlib import Path

from bench.errors import UserError


def add_arguments(p):
    p.add_argument("results", nargs="*", metavar="RESULTS",
                   help="result files of `tokenbench run` (or folders of them); `tokenbench peak` files among them "
                        "give their device a measured FLOP ceiling")
    p.add_argument("--out", help="folder for the report (default reports/<date>-<time>)")
    p.add_argument("--allow-mixed", action="store_true",
                   help="draw runs of different models or dtypes on the same axes (refused by default)")
    p.add_argument("--compare", nargs=2, action="append", metavar=("A", "B"), default=[],
                   help="add the side-by-side table of A and B (result files among RESULTS); repeatable")


def main(args) -> int:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError("tokenbench report needs matplotlib: pip install 'tokenbench[report]'") from None
    from bench.report.build import Options, build
    from bench.report.load import read_runs

    runs, _ = read_runs(args.results)
    by_path = {str(r.path): r for r in runs} | {r.path.name: r for r in runs}
    pairs = []
    for a, b in args.compare:
        missing = [x for x in (a, b) if x not in by_path and str(Path(x)) not in by_path]
        if missing:
            raise UserError(f"--compare {a} {b}: {', '.join(missing)} is not among the result files given")
        pairs.append((by_path.get(a) or by_path[str(Path(a))], by_path.get(b) or by_path[str(Path(b))]))
    out = Path(args.out or f"reports/{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        written = build(runs, out, Options(allow_mixed=args.allow_mixed, pairs=pairs))
    except OSError as exc:
        raise UserError(f"cannot write the report into {out}: {exc.strerror or exc}") from None
    for path in written:
        print(path)
    print(f"report: {out / 'report.md'} (self-contained: {out / 'report.html'})")
    return 0

"""Turn result files into plots and a page: roofline per device, throughput vs interactivity with its Pareto
frontier, cost per token, each op's efficiency, and side-by-side tables. Writes PNGs, report.md and a
self-contained report.html (the PNGs embedded).

    tokenbench report results/a.json results/b.json --out reports/ab
    tokenbench report results/            # every result file in the folder
    tokenbench report results/WORKLOAD.json --served costmodel/data/served.csv --at-interactivity 50
"""
from __future__ import annotations

import sys
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
                   help="add `tokenbench compare A B`'s table: each a result file among RESULTS or a catalog device "
                        "key (the other side's run projected onto it); repeatable")
    p.add_argument("--project-to", metavar="DEVICES",
                   help="comma list of catalog devices: every run projected there (`tokenbench project`), costed at "
                        "the catalog's price and power, drawn dashed on the cost plot")
    p.add_argument("--project-as", metavar="DTYPE",
                   help="dtype the projections serve in (e.g. a CPU fp32 run as bf16); default the run's own")
    p.add_argument("--served", metavar="FILE",
                   help="served results (CSV or InferenceX result JSON, e.g. costmodel/data/served.csv) drawn as "
                        "markers beside the workload files' curves")
    p.add_argument("--price-per-hour", help="$ per device-hour every run and workload is costed at (default: each "
                                            "one's recorded price, else for a CPU the CPU catalog's estimate)")
    p.add_argument("--power-kw", help="all-in kW per device for tokens/s per MW (default: each one's recorded figure)")
    p.add_argument("--at-interactivity", type=float, metavar="U",
                   help="add a table of every workload curve read at U tokens/s per user (never extrapolated)")


def main(args) -> int:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError("tokenbench report needs matplotlib: pip install 'tokenbench[report]'") from None
    from bench.report.build import Options, build
    from bench.report.load import read_inputs

    if args.project_as is not None and not args.project_to:
        raise UserError("--project-as does nothing without --project-to DEVICES (the projections it sets the dtype of)")
    if args.project_as is not None and args.project_as not in ("fp32", "tf32", "bf16", "fp16", "fp8", "fp4"):
        raise UserError(f"unknown --project-as dtype {args.project_as!r}; choose one of: fp32, tf32, bf16, fp16, "
                        "fp8, fp4")
    seen = {}
    for given in args.results:
        key = str(Path(given).resolve())
        if key in seen:
            raise UserError(f"{given} is given twice (as {seen[key]} too): each run is drawn once")
        seen[key] = given
    from bench.parsing import positive_float

    price, power = positive_float(args.price_per_hour, "--price-per-hour"), positive_float(args.power_kw, "--power-kw")
    runs, _, workloads = read_inputs(args.results, price, power)  # each costed at a price it says the source of
    served = _served(args, workloads)
    pairs = [(_side(runs, a), _side(runs, b)) for a, b in args.compare]
    targets = [t.strip() for t in (args.project_to or "").split(",") if t.strip()]
    if args.project_to is not None and not targets:
        raise UserError("--project-to is empty; give catalog device keys (see `tokenbench devices`)")
    for key in targets + [x for pair in pairs for x in pair if isinstance(x, str)]:
        from bench.configs.device_catalog import lookup

        lookup(key)  # an unknown key fails here, naming the known ones, before anything is drawn
    out = Path(args.out or f"reports/{time.strftime('%Y%m%d-%H%M%S')}")
    extra = []
    if targets and workloads:  # workload files projected onto the targets: dashed, labelled projected
        from bench.workload.projection import projections_for

        for w in workloads:
            points, notes = projections_for(w, targets, args.project_as)
            extra += points
            for note in notes:
                print(f"note: {w.path}: {note}", file=sys.stderr)
    options = Options(allow_mixed=args.allow_mixed, pairs=pairs, project_to=targets if runs else [],
                      project_as=args.project_as, served=served, served_file=args.served,
                      at_interactivity=args.at_interactivity, extra_points=extra)
    try:
        written = build(runs, out, options, workloads)
    except OSError as exc:
        raise UserError(f"cannot write the report into {out}: {exc.strerror or exc}") from None
    for path in written:
        print(path)
    print(f"report: {out / 'report.md'} (self-contained: {out / 'report.html'})")
    return 0


def _served(args, workloads) -> list:
    """The served points of --served FILE (checked), after checking the workload options make sense."""
    if args.at_interactivity is not None and not args.at_interactivity > 0:
        raise UserError(f"--at-interactivity must be positive tokens/s per user, got {args.at_interactivity:g}")
    for flag, given in (("--served", args.served), ("--at-interactivity", args.at_interactivity)):
        if given is not None and not workloads:
            raise UserError(f"{flag} is for workload files (`tokenbench workload`); none among the results given")
    if not args.served:
        return []
    from costmodel.served_results import read_served

    return read_served(args.served)


def _side(runs, arg: str):
    """A --compare side: a run given among RESULTS (by path or file name), else a catalog device key."""
    for run in runs:
        if arg in (str(run.path), run.path.name) or Path(arg).resolve() == run.path.resolve():
            return run
    if arg.endswith(".json") or Path(arg).exists():
        raise UserError(f"--compare: {arg} is not among the result files given; add it to RESULTS")
    return arg

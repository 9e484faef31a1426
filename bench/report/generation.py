"""The report's side-by-side tables and projected curves, made by the compare and project commands' own code
(costmodel.generation_compare, costmodel.roofline_projection and the side builders of bench/commands/compare.py), so the page
shows exactly what `tokenbench compare` and `tokenbench project` print. Nothing is recomputed here.
"""
from __future__ import annotations

from types import SimpleNamespace

from bench.errors import UserError
from bench.records.schema import Step
from bench.report import page
from bench.report.load import Curve, Run


def _side_args():
    from bench.derive.comparison_sides import SideArgs

    # the recorded price and power of a run, the catalog's for a device: no overrides from the report
    return SideArgs(SimpleNamespace(price_per_hour=None, power_kw=None, tier=None), 0)


def comparison(a: Run | str, b: Run | str):
    """`tokenbench compare A B` with its defaults: each side a run, or a catalog device key (the other side's
    run projected onto it). Returns costmodel.generation_compare.Comparison."""
    from bench.derive.comparison_sides import device_side, run_side
    from costmodel.generation_compare import compare

    runs = [x for x in (a, b) if isinstance(x, Run)]
    if not runs:
        raise UserError(f"--compare {a} {b}: at least one side must be a result file (two catalog devices have "
                        f"no tokens/s to compare; use `tokenbench compare` with --tokens-per-s)")
    anchor = runs[0].record
    sides = [run_side(x.record, _side_args()) if isinstance(x, Run)
             else device_side(x, _side_args(), anchor.dtype, anchor, None) for x in (a, b)]
    return compare(sides[0], sides[1])


def blocks(a: Run | str, b: Run | str) -> list:
    """The comparison as page blocks: heading, operating point, the compare table, prices, power, notes."""
    from costmodel.number_format import money, sig

    c = comparison(a, b)
    out = [page.Heading(f"A = {c.a.label}; B = {c.b.label}", 3),
           page.Para(f"Operating point: {c.point.how}.")]
    chosen = [f"{tag}: batch {s.step.batch}, context {s.step.context}, backend {s.step.backend} "
              f"({s.kind})" for tag, s in (("A", c.a), ("B", c.b)) if s.step]
    for tag, side in (("A", c.a), ("B", c.b)):
        chosen.append(f"{tag} price: " + (f"{money(side.price.price_per_hour)}/h [{side.price.source}]"
                                          if side.price else "- (not priced)"))
        chosen.append(f"{tag} power: " + (f"{sig(side.power.kw)} kW [{side.power.source}]" if side.power else "-"))
        chosen += [f"{tag}: {n}" for n in side.notes]
    out.append(page.Bullets(chosen))
    out.append(page.Table(["", "A", "B", "B vs A"], c.rows(), caption="As `tokenbench compare` prints it "
                          "(measured sides from their runs' derived steps; projected sides labelled).",
                          align_left={0}))
    return out


def projections(runs: list[Run], targets: list[str], as_dtype: str | None) -> tuple[list[Curve], list[str]]:
    """Each run projected onto each target device (`tokenbench project`), costed at the target's catalog
    price and all-in power: one dashed curve per run, target, backend and context (its steps the projected
    ones, as Steps), and the assumptions."""
    from bench.derive.comparison_sides import device_spec, target_price_and_power
    from costmodel.economics import economics
    from costmodel.roofline_projection import project_run

    curves, notes = [], []
    no_overrides = SimpleNamespace(price_per_hour=None, power_kw=None, tier=None, utilisation=None, overhead=None,
                                   tco=None)
    for key in targets:
        spec = device_spec(key)
        quote, power = target_price_and_power(key, spec, no_overrides)
        for run in runs:
            proj = project_run(run.record, spec, source=run.label, as_dtype=as_dtype)
            notes.append(proj.assumption)
            notes += [f"{key} from {run.label}: {n}." for n in proj.notes]
            notes.append(f"{key} price: " + (f"${quote.price_per_hour:g}/h ({quote.source})" if quote else
                                              "none in the catalog") + "; power: " +
                         (f"{power.kw:g} kW ({power.source})" if power else "none") + ".")
            points: dict[tuple, list] = {}
            for s in proj.steps:
                fits = s.fits is not False
                econ = economics(quote.price_per_hour if quote else None, s.tokens_per_s,
                                 power.kw if power else None, utilisation=quote.utilisation if quote else 1.0)
                points.setdefault((s.backend, s.context), []).append(Step(
                    batch=s.batch, context=s.context, backend=s.backend, step_seconds=s.step_seconds,
                    tokens_per_s=s.tokens_per_s, tokens_per_s_per_user=s.tokens_per_s_per_user, fits=fits,
                    # a step that does not fit in the target's memory is no operating point: left uncosted
                    cost_per_mtok=econ.cost_per_mtok if fits else None,
                    tokens_per_s_per_mw=econ.tokens_per_s_per_mw if fits else None))
            for (backend, context), steps in sorted(points.items(), key=lambda kv: (kv[0][1], kv[0][0])):
                curve = Curve(run, backend, context, sorted(steps, key=lambda s: s.batch))
                curve.label = f"{key} ({proj.dtype}) from {run.label}" + (
                    f" · ctx {context}" if len(points) > 1 else "")
                curves.append(curve)
    return curves, list(dict.fromkeys(notes))

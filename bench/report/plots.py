"""One function per figure. Each draws on matplotlib's Agg canvas (headless; pyplot and its global state are
never used), writes one PNG with its caption printed under the plot, and returns the caption.

Axes carry units; an axis whose values span more than SPAN_FOR_LOG is logarithmic.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

from bench.report.load import Ceilings, Curve, Run
from costmodel.frontier import pareto  # the one Pareto frontier (workload curves and compare --served too)

DPI = 120
SPAN_FOR_LOG = 20.0  # max / min beyond which an axis is drawn on a log scale
MAX_EFFICIENCY_PANELS = 8
OP_ORDER = ("attn_norm", "qkv_proj", "rope", "kv_append", "attention", "o_proj", "ffn_norm", "gate_up_proj",
            "swiglu", "down_proj", "final_norm", "lm_head", "layer")
BACKEND_MARKERS = "os^Dv<>p"


def _figure(width: float, height: float, ncols: int = 1, nrows: int = 1, sharey: bool = False):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    return fig, axes


def _text(s: str) -> str:
    """Literal text for matplotlib: a pair of '$' would otherwise start mathtext."""
    return s.replace("$", r"\$")


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _save(fig, path: Path, title: str, caption: str) -> None:
    """Title above, caption below the plot, so a PNG passed around alone still says what it shows."""
    fig.suptitle(_text(title), fontsize=11, fontweight="bold")
    width_chars = int(fig.get_figwidth() * 72 / (7.5 * 0.55))
    top = 0.0
    if fig.legends:  # a legend hung below the axes: the caption goes under it
        fig.canvas.draw()
        to_fig = fig.transFigure.inverted()
        top = min(leg.get_window_extent().transformed(to_fig).y0 for leg in fig.legends) - 0.01
    fig.text(0.0, top, _text("\n".join(textwrap.wrap(caption, width_chars))), fontsize=7.5, va="top", ha="left",
             color="#333333")
    fig.savefig(path, format="png", bbox_inches="tight", pad_inches=0.15)


def _tick(value: float, _pos=None) -> str:
    """Log-axis tick labels: plain numbers from 0.01 to 10,000, powers of ten beyond."""
    if value <= 0:
        return ""
    if 1e-2 <= value < 1e4:
        return f"{value:,.10g}"
    exp = math.floor(math.log10(value) + 1e-9)
    mant = value / 10**exp
    return f"$10^{{{exp}}}$" if abs(mant - 1) < 1e-6 else f"${mant:.2g}\\times10^{{{exp}}}$"


def _log(ax, axis: str) -> None:
    from matplotlib.ticker import FuncFormatter

    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(FuncFormatter(_tick))
    target.set_minor_formatter(FuncFormatter(lambda v, p: _minor_tick(ax, axis, v)))


def _minor_tick(ax, axis: str, value: float) -> str:
    """Label the 2s and 5s between powers of ten, only when fewer than two powers of ten are in view."""
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    if lo <= 0 or value <= 0:
        return ""
    powers = math.floor(math.log10(hi)) - math.ceil(math.log10(lo)) + 1
    mant = round(value / 10 ** math.floor(math.log10(value) + 1e-9), 6)
    return _tick(value) if powers < 2 and mant in (2.0, 5.0) else ""


def _interactivity_axes(ax, xs: list[float], ys: list[float], xlabel: str, ylabel: str, empty: str) -> None:
    """An axis of some figure against interactivity: scales, labels, grid, and `empty` where nothing has a y."""
    _scale(ax, "x", xs)
    _scale(ax, "y", ys)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    if not ys:
        ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", color="grey")


def _scale(ax, axis: str, values: list[float]) -> None:
    vals = [v for v in values if v and v > 0]
    if vals and max(vals) / min(vals) > SPAN_FOR_LOG:
        _log(ax, axis)


def _op_rank(op: str) -> int:
    return OP_ORDER.index(op) if op in OP_ORDER else len(OP_ORDER)


# --- roofline -------------------------------------------------------------------------------------------

def roofline(runs: list[Run], ceilings: dict[str, Ceilings], path: Path, title: str, caption: str) -> str:
    """Ops and the decode step of one device's runs: FLOP/byte against achieved TFLOP/s, under the ceilings.

    A ceiling is min(peak TFLOP/s, intensity x bandwidth); without a FLOP peak only the bandwidth line is
    drawn, across the whole range. Ops that do no FLOPs (intensity 0) cannot sit on a log axis: listed.
    """
    fig, axes = _figure(9.0, 6.0)
    ax = axes[0][0]
    rows = [(run, r) for run in runs for r in run.valid_rows()]
    placed = [(run, r) for run, r in rows if r.intensity and r.tflops]
    zero = sorted({r.op for _, r in rows if not r.flops}, key=_op_rank)
    steps = [(run, s) for run in runs for s in run.valid_steps() if s.intensity and s.tflops]
    ops = sorted({r.op for _, r in placed}, key=_op_rank)
    color = dict(zip(ops, _colors(len(ops))))
    backends = sorted({r.backend for _, r in placed} | {s.backend for _, s in steps})
    marker = {b: BACKEND_MARKERS[i % len(BACKEND_MARKERS)] for i, b in enumerate(backends)}
    batches = sorted({r.batch for _, r in placed} | {s.batch for _, s in steps})

    def size(batch: int) -> float:  # marker area grows with log batch
        return 25 + 60 * (math.log2(batch) / max(1.0, math.log2(max(batches)))) if batches else 30

    # each op's sweep joined by a thin line (one line per run, backend, context)
    lines: dict[tuple, list] = {}
    for run, r in placed:
        lines.setdefault((run.label, r.op, r.backend, r.context), []).append(r)
    for (_, op, backend, _), pts in lines.items():
        pts.sort(key=lambda r: r.batch)
        ax.plot([p.intensity for p in pts], [p.tflops for p in pts], "-", color=color[op], lw=0.8,
                alpha=0.5)
        ax.scatter([p.intensity for p in pts], [p.tflops for p in pts], s=[size(p.batch) for p in pts],
                   color=color[op], marker=marker[backend], edgecolors="black", linewidths=0.3, zorder=3)
    for run, s in steps:
        ax.scatter([s.intensity], [s.tflops], s=160, marker="*", color="black", zorder=4)
        ax.annotate(f"b{s.batch}", (s.intensity, s.tflops), xytext=(5, -9), textcoords="offset points",
                    fontsize=7)

    xs = [r.intensity for _, r in placed] + [s.intensity for _, s in steps]
    ys = [r.tflops for _, r in placed] + [s.tflops for _, s in steps]
    xmin, xmax = (min(xs) / 3, max(xs) * 3) if xs else (0.1, 100.0)
    ridges = []
    for c in ceilings.values():
        for peak, bw in ((c.spec_tflops, c.spec_gbps), (c.measured_tflops, c.measured_gbps)):
            if peak and bw:
                ridges.append(peak * 1000 / bw)
    if ridges:
        xmax = max(xmax, max(ridges) * 4)
    import numpy as np

    grid = np.logspace(math.log10(xmin), math.log10(xmax), 200)
    ceiling_ys = []
    dashes = ["--", "-.", ":", (0, (5, 1, 1, 1))]
    for n, (label, c) in enumerate(ceilings.items()):
        prefix = f"{label}: " if len(ceilings) > 1 else ""
        for kind, peak, bw, style in (("spec sheet", c.spec_tflops, c.spec_gbps, "-"),
                                      ("measured", c.measured_tflops, c.measured_gbps, dashes[n % len(dashes)])):
            if not bw:
                continue
            roof = grid * bw / 1000  # FLOP/B x GB/s = GFLOP/s; / 1000 = TFLOP/s
            what = f"{bw:,.4g} GB/s"
            if peak:
                roof = np.minimum(roof, peak)
                what += f", {peak:,.4g} TFLOP/s"
            else:
                what += ", no FLOP ceiling"
            ax.plot(grid, roof, linestyle=style, color="#444444" if kind == "spec sheet" else "#c0392b", lw=1.6,
                    label=f"{prefix}{kind} ceiling ({what})")
            ceiling_ys.extend([roof.min(), roof.max()])
    _log(ax, "x")
    _log(ax, "y")
    ax.set_xlim(xmin, xmax)
    all_y = ys + ceiling_ys
    if all_y:
        ax.set_ylim(min(all_y) / 3, max(all_y) * 3)
    ax.set_xlabel("arithmetic intensity (FLOP/byte, minimum bytes moved)")
    ax.set_ylabel("achieved TFLOP/s")
    ax.grid(True, which="major", alpha=0.3)

    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", color=color[op], label=op) for op in ops]
    handles += [Line2D([], [], ls="", marker="*", color="black", markersize=11,
                       label="decode step (derived)")]
    if len(backends) > 1:
        handles += [Line2D([], [], ls="", marker=marker[b], color="grey", label=f"backend {b}") for b in backends]
    ceiling_handles, _ = ax.get_legend_handles_labels()
    first = ax.legend(handles=ceiling_handles, loc="upper left", fontsize=7.5, framealpha=0.9)
    ax.add_artist(first)
    ax.legend(handles=handles, loc="lower right", fontsize=7, ncol=2, framealpha=0.9,
              title=f"marker size: batch {batches[0]} to {batches[-1]}" if batches else None, title_fontsize=7)
    if zero:
        caption += f" Not placed (no FLOPs, intensity 0): {', '.join(zero)}."
    _save(fig, path, title, caption)
    return caption


# --- throughput vs interactivity ------------------------------------------------------------------------

def throughput_interactivity(curves: list[Curve], path: Path, title: str, caption: str) -> str:
    """tokens/s per device against tokens/s per user, a curve per run/backend/context, batch at each point.

    Steps whose weights and KV cache do not fit in the device's memory are drawn hollow and kept off the
    frontier: they are not operating points.
    """
    fig, axes = _figure(9.0, 6.0)
    ax = axes[0][0]
    colors = _colors(len(curves))
    fitting, xs, ys = [], [], []
    for c, col in zip(curves, colors):
        x = [s.tokens_per_s_per_user for s in c.steps]
        y = [s.tokens_per_s for s in c.steps]
        ax.plot(x, y, "-", color=col, lw=1.5, label=c.label)
        fits = [s.fits is not False for s in c.steps]
        ax.scatter([a for a, f in zip(x, fits) if f], [b for b, f in zip(y, fits) if f], color=col, s=36, zorder=3)
        ax.scatter([a for a, f in zip(x, fits) if not f], [b for b, f in zip(y, fits) if not f], facecolors="white",
                   edgecolors=col, s=36, zorder=3)
        for s in c.steps:
            ax.annotate(f"b{s.batch}", (s.tokens_per_s_per_user, s.tokens_per_s), xytext=(4, 4),
                        textcoords="offset points", fontsize=7, color=col)
        fitting += [(a, b) for a, b, f in zip(x, y, fits) if f]
        xs += x
        ys += y
    front = pareto(fitting)
    if front:
        ax.plot([p[0] for p in front], [p[1] for p in front], "-o", color="gold", lw=7, ms=15, alpha=0.5, zorder=1,
                solid_capstyle="round", label="Pareto frontier (all curves)")
    if len(fitting) < len(xs):
        ax.scatter([], [], facecolors="white", edgecolors="grey", label="does not fit in device memory")
    _scale(ax, "x", xs)
    _scale(ax, "y", ys)
    ax.set_xlabel("interactivity: tokens/s per user (1 / step time)")
    ax.set_ylabel("throughput: tokens/s per device (batch / step time)")
    ax.grid(True, which="major", alpha=0.3)
    _legend(fig, [ax], len(curves))
    _save(fig, path, title, caption)
    return caption


def _legend(fig, axes, entries: int) -> None:
    """One legend for the figure: inside the plot when short, below it (never over the data) when long."""
    handles = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    if not handles:
        return
    if entries <= 3 and len(axes) == 1:
        axes[0].legend(handles.values(), handles.keys(), fontsize=7.5, loc="best", framealpha=0.9)
    else:
        fig.legend(handles.values(), handles.keys(), fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=2 if len(handles) > 3 else len(handles), frameon=False)


# --- cost -----------------------------------------------------------------------------------------------

def cost_curves(curves: list[Curve], projected: list[Curve], path: Path, title: str, caption: str) -> str:
    """$/M tokens and tokens/s per MW against tokens/s per user; measured solid, projected dashed.

    A curve is drawn in a panel only over steps that carry that figure (a run without a price has none).
    """
    fig, axes = _figure(12.0, 5.2, ncols=2)
    left, right = axes[0]
    colors = _colors(len(curves) + len(projected))
    xs, cost_ys, mw_ys = [], [], []
    for c, col, style in zip(curves + projected, colors, ["-o"] * len(curves) + ["--s"] * len(projected)):
        for ax, key, acc in ((left, "cost_per_mtok", cost_ys), (right, "tokens_per_s_per_mw", mw_ys)):
            pts = [(s.tokens_per_s_per_user, getattr(s, key), s.batch) for s in c.steps if getattr(s, key)]
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=col, lw=1.5, ms=5,
                    label=c.label + (" (projected)" if style.startswith("--") else ""))
            for x, y, b in pts:
                ax.annotate(f"b{b}", (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7, color=col)
            xs.extend(p[0] for p in pts)
            acc.extend(p[1] for p in pts)
    for ax, ys, label in ((left, cost_ys, "$ per million tokens"), (right, mw_ys, "tokens/s per MW (all-in power)")):
        _interactivity_axes(ax, xs, ys, "interactivity: tokens/s per user", label, "no run carries this figure")
    _legend(fig, [left, right], len(curves) + len(projected))
    left.set_title("cost per token (lower is better)", fontsize=9)
    right.set_title("tokens per megawatt (higher is better)", fontsize=9)
    _save(fig, path, title, caption)
    return caption


# --- efficiency -----------------------------------------------------------------------------------------

def efficiency_basis(run: Run) -> tuple[str, str, str]:
    """(row key, y-axis label, what it means) for the run's efficiency bars.

    Spec-sheet bound where the device has a spec sheet; else the bound under the ceilings measured on the
    device; where no FLOP ceiling was measured, the memory floor alone (bytes / measured copy bandwidth):
    a lower bound on the % of roofline, exact for memory-bound ops.
    """
    rows = [r for r in run.valid_rows() if r.flops]
    if rows and all(r.efficiency_spec is not None for r in rows):
        return ("efficiency_spec", "% of roofline bound (spec sheet)",
                "Efficiency = roofline bound under the spec-sheet ceilings / measured time.")
    if rows and all(r.efficiency_measured is not None for r in rows):
        return ("efficiency_measured", "% of roofline bound (measured ceilings)",
                "Efficiency = roofline bound under the ceilings measured on this device / measured time.")
    return ("pct_copy_bw", "% of memory floor (measured copy BW)",
            "Efficiency here = memory floor (bytes / measured copy bandwidth) / measured time: no FLOP ceiling "
            "is known, so this is a lower bound on the % of roofline, exact for memory-bound ops.")


def efficiency_points(run: Run) -> tuple[list[tuple[int, int]], bool]:
    """The (batch, context) panels drawn, at most MAX_EFFICIENCY_PANELS spread over the sweep; True if cut."""
    points = sorted({(r.batch, r.context) for r in run.valid_rows()}, key=lambda p: (p[1], p[0]))
    if len(points) <= MAX_EFFICIENCY_PANELS:
        return points, False
    step = (len(points) - 1) / (MAX_EFFICIENCY_PANELS - 1)
    return [points[round(i * step)] for i in range(MAX_EFFICIENCY_PANELS)], True


def efficiency_bars(run: Run, path: Path, title: str, caption: str) -> str:
    """Each op's % of its roofline bound, bars per backend, one panel per (batch, context)."""
    key, ylabel, _ = efficiency_basis(run)
    points, _ = efficiency_points(run)
    ncols = min(4, len(points)) or 1
    nrows = max(1, math.ceil(len(points) / ncols))
    fig, axes = _figure(3.6 * ncols + 0.6, 3.4 * nrows + 0.4, ncols=ncols, nrows=nrows, sharey=True)
    rows = run.valid_rows()
    backends = sorted({r.backend for r in rows})
    colors = dict(zip(backends, _colors(len(backends))))
    values = [getattr(r, key) * 100 for r in rows if getattr(r, key)]
    log = bool(values) and max(values) / min(values) > 100
    import numpy as np

    for i, (batch, context) in enumerate(points):
        ax = axes[i // ncols][i % ncols]
        here = [r for r in rows if r.batch == batch and r.context == context]
        ops = sorted({r.op for r in here}, key=_op_rank)
        width = 0.8 / max(1, len(backends))
        for j, backend in enumerate(backends):
            by_op = {r.op: getattr(r, key) for r in here if r.backend == backend}
            heights = [100 * by_op[op] if by_op.get(op) else 0 for op in ops]
            ax.bar(np.arange(len(ops)) + (j - (len(backends) - 1) / 2) * width, heights, width, color=colors[backend],
                   label=backend, edgecolor="black", linewidth=0.3)
        ax.set_xticks(np.arange(len(ops)), ops, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"batch {batch}, context {context}", fontsize=9)
        if log:
            _log(ax, "y")
        if values and max(values) > 50:
            ax.axhline(100, color="black", lw=0.8, ls=":")
        if i % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
        if i == 0 and len(backends) > 0:
            ax.legend(fontsize=7, title="backend", title_fontsize=7)
    for k in range(len(points), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    _save(fig, path, title, caption)
    return caption

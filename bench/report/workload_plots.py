"""The workload figures (InferenceX's way of drawing serving economics), on the same canvas helpers as plots.py:

- throughput: total tokens/s per GPU against tokens/s per user, one frontier line per device / precision /
  workload / engine model (measured solid, projected dashed), every placed point marked with its concurrency
  (points off the frontier hollow), served results as large crosses;
- cost: $/M tokens (total, InferenceX convention) against tokens/s per user, the same curves.
"""
from __future__ import annotations

from pathlib import Path

from bench.report.plots import _colors, _figure, _interactivity_axes, _legend, _save

ENGINE_MARKERS = {"chunked-prefill": "o", "prefill-then-decode": "s", "served": "X"}
STYLE = {"measured": "-", "projected": "--"}


def _draw(ax, curve, color, ykey) -> tuple[list, list]:
    """One curve on ax: its frontier joined, every placed point marked (hollow off the frontier)."""
    xs, ys = [], []
    marker = ENGINE_MARKERS.get(curve.engine_model, "o")
    front = {id(p) for p in curve.frontier}
    placed = [p for p in curve.placed if ykey(curve, p)]
    if not placed:
        return xs, ys
    if curve.source == "served":
        ax.scatter([p.interactivity for p in placed], [ykey(curve, p) for p in placed], marker="X", s=90,
                   color=color, edgecolors="black", linewidths=0.6, zorder=4, label=curve.legend)
    else:
        line = [p for p in curve.frontier if ykey(curve, p)]
        ax.plot([p.interactivity for p in line], [ykey(curve, p) for p in line], STYLE[curve.source], color=color,
                lw=1.6, marker=marker, ms=5.5, label=curve.legend)
        on = [p for p in placed if id(p) in front]
        off = [p for p in placed if id(p) not in front]
        ax.scatter([p.interactivity for p in on], [ykey(curve, p) for p in on], marker=marker, color=color, s=34,
                   zorder=3)
        ax.scatter([p.interactivity for p in off], [ykey(curve, p) for p in off], marker=marker,
                   facecolors="white", edgecolors=color, s=34, zorder=3)
    for p in placed:
        ax.annotate(f"c{p.concurrency}", (p.interactivity, ykey(curve, p)), xytext=(4, 4), textcoords="offset points",
                    fontsize=7, color=color)
        xs.append(p.interactivity)
        ys.append(ykey(curve, p))
    return xs, ys


def _finish(fig, ax, curves, xs, ys, ylabel: str, path: Path, title: str, caption: str) -> str:
    _interactivity_axes(ax, xs, ys, "interactivity: tokens/s per user (1 / time per output token)", ylabel,
                        "no curve carries this figure")
    _legend(fig, [ax], len(curves))
    _save(fig, path, title, caption)
    return caption


def throughput(curves: list, path: Path, title: str, caption: str) -> str:
    """Total tokens/s per GPU against tokens/s per user (InferenceX's headline chart)."""
    fig, axes = _figure(9.0, 6.0)
    ax = axes[0][0]
    xs, ys = [], []
    for c, col in zip(curves, _colors(len(curves))):
        x, y = _draw(ax, c, col, lambda curve, p: p.total_tokens_per_s)
        xs += x
        ys += y
    return _finish(fig, ax, curves, xs, ys, "throughput: total (input + output) tokens/s per GPU", path, title,
                   caption)


def cost(curves: list, path: Path, title: str, caption: str) -> str:
    """$/M tokens (total: the hour's price over all tokens, InferenceX's convention) against tokens/s per user."""
    fig, axes = _figure(9.0, 6.0)
    ax = axes[0][0]
    xs, ys = [], []
    for c, col in zip(curves, _colors(len(curves))):
        x, y = _draw(ax, c, col, lambda curve, p: curve.economics(p).cost_per_mtok_total)
        xs += x
        ys += y
    return _finish(fig, ax, curves, xs, ys, "$ per million tokens (total, lower is better)", path, title, caption)

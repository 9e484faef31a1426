"""Rows whose timing cannot be trusted although their noise figure looks fine.

Seen on a shared 2-core VM under contention: rows landed on whole multiples of the scheduler quantum (about
4, 8, 16 ms) with a tiny IQR, e.g. swiglu at batch 8 at 15,992 us (noise 0.1%) where batch 1 took 209 us.
Two checks catch that: the samples sit on a few discrete levels far above what the op needs, or the row is
slower than the same op at a smaller batch by far more than its extra work explains."""
from __future__ import annotations

# A time this many times the roofline bound is not the op's cost but something else's (a descheduled thread).
FAR_ABOVE_BOUND = 50.0
# At most this many distinct sample values (2% resolution) reads as a timer stuck on a quantum.
FEW_LEVELS = 3
# Slower than the smaller batch by this factor beyond the ratio of work (bytes or FLOPs, the larger).
BEYOND_WORK = 6.0
MIN_SAMPLES = 5


def _bound_seconds(row) -> float | None:
    return row.roofline_seconds_measured or row.roofline_seconds_spec


def _work(row) -> float:
    return max(row.bytes or 0, row.flops or 0, 1)


def flag_unreliable(rows: list) -> list:
    """Mark and return the measured rows (bench.records.schema.MeasuredRow) that fail either check (the row's
    `unreliable` says why)."""
    timed = [r for r in rows if r.valid and r.seconds_p50]
    for r in timed:
        bound = _bound_seconds(r)
        levels = r.levels
        if (bound and levels is not None and (r.samples or 0) >= MIN_SAMPLES and levels <= FEW_LEVELS
                and r.seconds_p50 > FAR_ABOVE_BOUND * bound):
            r.unreliable = (f"samples sit on {levels} discrete value(s) at {r.seconds_p50 * 1e3:.1f} ms, "
                            f"{r.seconds_p50 / bound:.0f}x the op's bound: likely the scheduler's quantum")
    by_key = {}
    for r in timed:
        # rows that differ only in batch: same op, context, backend, and (prefill/mixed) chunk position
        where = (r.phase, r.prompt, r.chunk, r.chunk_index, r.chunk_tokens, r.prefix)
        by_key.setdefault((r.op, r.context, r.backend, where), []).append(r)
    for group in by_key.values():
        group.sort(key=lambda r: r.batch)
        for small, big in zip(group, group[1:]):
            slower = big.seconds_p50 / small.seconds_p50
            work = _work(big) / _work(small)
            if slower > BEYOND_WORK * max(work, 1.0) and big.unreliable is None:
                big.unreliable = f"{slower:.0f}x slower than batch {small.batch} for {work:.1f}x the work"
    return [r for r in timed if r.unreliable]

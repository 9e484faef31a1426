"""Decode-step ops: each file holds an op's implementations, its float64 reference, input maker,
and the FLOP and minimum-byte formulas. Nothing here knows about timing or money."""

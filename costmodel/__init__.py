"""Per-token economics from measured throughput, price and power.

Pure Python (numpy/pandas at most): no torch import, so a capacity planner can use it on a laptop.
"""

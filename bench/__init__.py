"""tokenbench harness: devices, models, timers, the correctness-gated measure step, sweeps, results, CLI."""

__version__ = "0.1.0"

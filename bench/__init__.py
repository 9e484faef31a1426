"""tokenbench harness: devices, models, timers, the correctness-gated measure step, sweeps, results, CLI."""

__version__ = "0.1.0"

# A torchrun rank of `tokenbench tp` / `workload --tp` (the launcher sets this in the group's environment): ask, as
# the first thing the rank does, to be killed with torchrun, its parent, so that a SIGKILLed launcher (torchrun dies
# with it) leaves no rank running; torch's import takes seconds, too late to ask after it.
if __import__("os").environ.get("TOKENBENCH_DIE_WITH_PARENT") == "1":
    from bench.errors import die_with_parent as _die_with_parent

    _die_with_parent(orphan=True)

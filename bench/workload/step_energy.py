"""The board's energy of one whole workload step (--energy steps): the step as the composition counts it,
layers x each layer case + final_norm + lm_head, replayed back to back in one NVML window of >= 1 s
(bench/measure/energy.py), instead of a window per layer and tail row. One window a step is what a joules-per-token
figure needs; single ops get none."""
from __future__ import annotations

from collections.abc import Callable

# seeds of the window's own input sets: fresh random inputs, apart from the timing's
_SEED = 7919


def step_call(layer_cases: list, tail_cases: list, layers: int, backend: str) -> Callable[[], None]:
    """One step of work: every layer case `layers` times, then each tail op once, each on one input set."""
    calls = [(c.impls[backend], c.make_inputs(_SEED + i), layers) for i, c in enumerate(layer_cases)]
    calls += [(c.impls[backend], c.make_inputs(_SEED + 100 + i), 1) for i, c in enumerate(tail_cases)]

    def run():
        for fn, inputs, times in calls:
            for _ in range(times):
                fn(inputs)
    return run


def step_board_joules(layer_cases: list, tail_cases: list, layers: int, backend: str,
                      cuda_graph: bool = True) -> tuple:
    """(joules per step, None) over one tick-aligned window of back-to-back steps, or (None, why). The step is
    captured in a CUDA graph where it can be (the launch gaps of eager calls would count as idle board time)."""
    import torch

    from bench.measure import energy

    run = step_call(layer_cases, tail_cases, layers, backend)
    replay, how = run, "eager"
    if cuda_graph:
        try:
            run()  # warm: allocations and any first-call work happen outside the capture
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                run()
            replay, how = graph.replay, "graph"
        except RuntimeError as exc:  # a capture that fails: eager calls, said in the reason if no reading
            how = f"eager (graph capture failed: {str(exc).splitlines()[0][:80]})"

    def call():
        replay()
        torch.cuda.synchronize()

    reading = energy.board_window(call, torch.cuda.current_device())
    if reading.joules is None:
        return None, f"{reading.reason} ({how})"
    return reading.joules_per_call, None

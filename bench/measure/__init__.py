"""How one case is measured: the float64 gate (gate), timers with input rotation, cache flushing and CUDA
graphs (timing), copy bandwidth (bandwidth), NVML energy windows (energy), and the check that flags rows
whose timing cannot be trusted (reliability). The CPU time other processes used during a run is recorded
with the run (bench/records/machine_share.py)."""

"""Workloads: an ISL/OSL prompt-and-answer mix served at a concurrency, composed from measured steps.

plan           what a workload measures: the chunked-prefill step and the prefill-then-decode cohort
measure_steps  those steps measured through the gate and timers of bench/measure
step_energy    one NVML window per whole step (--energy steps): the step's joules without metering single ops
compose        workload points from the measured steps (torch-free arithmetic)
queueing       the chunked engine's TTFT with the wait serving benchmarks include, per-user rate, engine policies
recompose      a stored workload composed again under an engine policy, beside a real engine's served figures
pipeline       plan -> measure -> compose -> price, written after every row; `tokenbench workload` calls it
e2e            the same cohort run end to end with tokenbench's own model, beside the composed figure
projection     a measured workload carried onto a catalog device (torch-free)
table          the terminal tables of a workload run
tp_group       `workload --tp N`: the steps measured on a torchrun group (launcher side)
tp_worker      the ranks' side of that group
"""

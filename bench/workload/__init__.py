"""Workloads: an ISL/OSL prompt-and-answer mix served at a concurrency, composed from measured steps
(plan -> measure -> compose) and checked against an end-to-end run of the same cohort (e2e)."""

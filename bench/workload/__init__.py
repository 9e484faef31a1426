"""Workloads: ISL prompt tokens and OSL answer tokens at a concurrency, composed from measured steps and
checked against an end-to-end run of the model (e2e.py)."""

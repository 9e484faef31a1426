"""Figures derived from records: roofline efficiency (roofline), a run's price quote and per-step economics
while it is measured (run_pricing), a stored run's steps or its projection priced afterwards
(stored_run_pricing), the sides of compare/project (comparison_sides), and served results set beside a
workload (served_comparison; printed by bench/report/served_comparison_table.py)."""

"""`tokenbench report`: result files turned into plots and a page that links them.

load.py   reads and checks the inputs, groups steps into curves, finds each run's ceilings
cell_format.py   every figure printed on the page, formatted in one place
plots.py  one function per figure (matplotlib's Agg canvas; pyplot is never used)
page.py   the Markdown page and the self-contained HTML page, from one list of blocks
generation.py   the side-by-side tables and projected curves, from compare's and project's own code
build.py  puts them together: the figures and tables for a set of runs
workload_section.py, workload_plots.py   the workload section: throughput and $/M against interactivity per Pareto
          frontier, served results (--served) as markers, a table at --at-interactivity U
served_table.py   the table of `tokenbench served`: a served-results file's points as InferenceX reports them
cpu_paths.py   what the CPU GEMM / attention choosers measured, and a line where a dtype has no native matmul
run_tables.py, terminal_tables.py   the terminal tables of `run`/`show`, and tables that never cut a cell
served_comparison_table.py   the terminal table of `compare RUN --served FILE`
"""

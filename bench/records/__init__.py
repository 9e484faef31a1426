"""What a run leaves behind: the typed records (schema), the one reader and writer of results files (store),
the environment captured into every header (environment), the CPU time other processes used while a run was
recorded (machine_share), stored peaks read as ceilings (peak_files), and pytest-benchmark files
(benchmark_files)."""

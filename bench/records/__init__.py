"""What a run leaves behind: the typed records (schema), the one reader and writer of results files (store),
the environment captured into every header (environment), stored peaks read as ceilings (peak_files), and
pytest-benchmark files (benchmark_files)."""

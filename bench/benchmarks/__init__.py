"""pytest-benchmark suites (see conftest.py)."""

"""pytest-benchmark suites; their options, storage, machine info and timer live in bench/conftest.py."""

"""pytest-benchmark suites (test_ops: every op and the layer per backend; test_decode: the whole decode
step) and what they share (harness); their options, storage, machine info and timer live in
bench/conftest.py."""

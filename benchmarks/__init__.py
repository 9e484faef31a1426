"""pytest-benchmark suites (test_ops: every op and the layer per backend; test_decode: the whole decode
step) and what they share (harness); their options, storage, machine info and timer live in
benchmarks/conftest.py. They sit outside the product (bench/): a pytest plugin and its suites, not
part of `tokenbench`."""

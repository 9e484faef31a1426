import os

import pytest
import torch

# Triton kernels run on a CPU only under the interpreter, and the switch is read when a kernel is
# defined, so it must be set before any kernels.triton module is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def fp32_cpu_default(request, monkeypatch):
    """The tests' recorded figures and tolerances assume a CPU run without --dtype is fp32; a machine with
    native bf16 (AMX, AVX-512 BF16) would otherwise pick bf16 and the same suite would test other things on
    other CI machines. tests/test_cpu_dtype.py tests the choice itself."""
    if request.module.__name__.endswith("test_cpu_dtype"):
        return
    import bench.configs.cpu_dtype

    monkeypatch.setattr(bench.configs.cpu_dtype, "cpu_flags", lambda path="/proc/cpuinfo": set())


@pytest.fixture(scope="session")
def gloo_pair(tmp_path_factory):
    """Two gloo ranks spawned once for the sharded-vs-one-process comparisons (tests/gloo_pair.py)."""
    import gloo_pair as pair

    return pair.run(tmp_path_factory.mktemp("gloo_pair"))

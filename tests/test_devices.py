import pytest

from bench.configs import device_catalog
from bench.errors import UserError


def test_every_catalog_entry_has_a_source_and_positive_known_figures():
    cat = device_catalog.catalog()
    for key in ("h100-sxm", "h100-pcie", "h200", "b200", "gb200", "b300", "a100-sxm-80gb", "l40s", "mi300x",
                "mi325x", "mi355x"):
        assert key in cat
    for spec in cat.values():
        assert spec.source
        assert set(spec.peak_tflops) == set(device_catalog.DTYPES)
        for v in list(spec.peak_tflops.values()) + [spec.mem_bw_gbs, spec.memory_gb, spec.tdp_w]:
            assert v is None or v > 0


def test_spec_figures_from_guide():
    h200 = device_catalog.lookup("h200")
    assert h200.peak_flops("bf16") == 989e12
    assert h200.mem_bw_bytes_per_s == 4.8e12
    assert device_catalog.lookup("b200").peak_tflops["fp4"] == 9000
    assert device_catalog.lookup("a100-sxm-80gb").peak_tflops["fp8"] is None  # no FP8 on Ampere


@pytest.mark.parametrize("name,key", [
    ("NVIDIA H200", "h200"), ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA H100 PCIe", "h100-pcie"),
    ("NVIDIA GB200", "gb200"), ("NVIDIA B200", "b200"), ("NVIDIA A100-SXM4-80GB", "a100-sxm-80gb"),
    ("AMD Instinct MI300X", "mi300x"), ("NVIDIA GeForce RTX 4090", None),
    # variants: their own entry, or none (unknown peaks), never a neighbour's
    ("NVIDIA H200 NVL", "h200-nvl"), ("NVIDIA H100 NVL", None), ("NVIDIA GH200 480GB", None),
    ("NVIDIA GH200 144G HBM3e", None), ("NVIDIA A100-SXM4-40GB", None), ("NVIDIA A100 80GB PCIe", None),
    ("NVIDIA A100-PCIE-40GB", None), ("NVIDIA H100 SXM5 80GB", "h100-sxm"), ("NVIDIA L40S", "l40s"),
    ("NVIDIA B300 SXM6 AC", "b300"), ("NVIDIA GB300", "gb300"), ("AMD Instinct MI325X", "mi325x"),
])
def test_match_spec(name, key):
    spec = device_catalog.match_spec(name)
    assert (spec.key if spec else None) == key


def test_cpu_detection_reports_unknown_spec():
    d = device_catalog.detect("cpu")
    assert d.kind == "cpu" and d.spec is None and d.memory_bytes > 0
    assert d.to_dict()["spec"] is None


def test_unknown_device_key_lists_choices():
    with pytest.raises(UserError, match="h200"):
        device_catalog.lookup("tpu-v9")
    with pytest.raises(UserError, match="auto, cuda, cpu"):
        device_catalog.detect("quantum")

from bench.configs.cpu_dtype import cpu_default_dtype, cpu_flags


def test_native_bf16_flags_choose_bf16():
    assert cpu_default_dtype({"avx2", "amx_bf16"})[0] == "bf16"
    assert cpu_default_dtype({"avx512_bf16"})[0] == "bf16"


def test_no_bf16_flag_chooses_fp32():
    dtype, why = cpu_default_dtype({"avx2", "avx512f"})
    assert dtype == "fp32" and "no native bf16" in why


def test_missing_cpuinfo_reads_no_flags(tmp_path):
    assert cpu_flags(str(tmp_path / "absent")) == set()

"""What is measured: model configs (model_configs), device spec sheets and detection (device_catalog, with
bench/data/devices.json; nvml_board: which NVML board a CUDA device is), and the CPU's default dtype (cpu_dtype)."""

"""What is measured: model configs (model_configs), device spec sheets and detection (device_catalog, with
bench/data/devices.json), and the CPU's default dtype (cpu_dtype)."""

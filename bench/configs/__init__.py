"""What is measured: model configs (model_configs: the catalog, bench/data/models/ config.json files with their
sources, and --model PATH), the Hugging Face config.json reader (hf_config), what `tokenbench models` says of a
model (model_summary), device spec sheets and detection (device_catalog, with bench/data/devices.json;
nvml_board: which NVML board a CUDA device is), and the CPU's default dtype (cpu_dtype)."""

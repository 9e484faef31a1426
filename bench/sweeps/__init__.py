"""One sweep per kind, each a loop of gate -> time -> record over its cases: decode (decode_sweep, which also
holds the measure step every sweep uses and the check-only sweep of `verify`), prefill and mixed
(prefill_sweep), a whole `tokenbench run` from its plan to its finished record around either (measured_run),
peak ceilings and their record (peak_sweep), tensor parallel (tp_sweep, started by torchrun_launcher; each
rank's entry and group lifecycle in torchrun_worker), the Hugging Face peer of `tokenbench peer` (hf_peer), and
llama.cpp beside it (llamacpp_peer, on a GGUF of the same weights written by llamacpp_gguf), and the op sweeps
outside the decode layer: FP8 GEMMs beside bf16 (fp8_sweep) and the MoE MLP block at uniform and Zipf routing
(moe_sweep), which start from op_sweep_setup (their plan, results record and measured copy ceiling). Expert
parallelism (ep_sweep): the MoE block sharded by experts on a torchrun group, or one device's share with the
all-to-alls modelled."""

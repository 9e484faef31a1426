"""One measuring engine and the sweeps that are plans for it. The engine (engine) runs every sweep's
lifecycle: open the record, measure the ceilings, per case fit check, gate, time, write the row, progress,
derive each group's steps, and Ctrl-C / SIGTERM / failure handling once. The plans: decode (decode_sweep, which
also holds the measure step every single-device sweep uses and the check-only sweep of `verify`), prefill and
mixed (prefill_sweep), the cases and per-routing steps of a model composed from its config's layer types in
either (spec_steps), a whole `tokenbench run` around either (measured_run), peak ceilings and their record
(peak_sweep), tensor parallel (tp_sweep, started by torchrun_launcher; each rank's entry and group lifecycle
in torchrun_worker), and the op sweeps outside the decode layer: FP8 GEMMs beside bf16 (fp8_sweep) and the
MoE MLP block at uniform and Zipf routing (moe_sweep), which start from op_sweep_setup (their plan, results
record and measured copy ceiling). Not plans: the Hugging Face peer of `tokenbench peer` (hf_peer) and
llama.cpp beside it (llamacpp_peer, on a GGUF of the same weights written by llamacpp_gguf), which time other
software's models; expert parallelism (ep_sweep: the MoE block sharded by experts on a torchrun group, or one
device's share with the all-to-alls modelled), which prints and writes no record yet."""

"""One sweep per kind, each a loop of gate -> time -> record over its cases: decode (decode_sweep, which also
holds the measure step every sweep uses), prefill and mixed (prefill_sweep), peak ceilings (peak_sweep),
tensor parallel (tp_sweep, started by torchrun_launcher; each rank's entry and group lifecycle in
torchrun_worker), and the Hugging Face peer (hf_peer)."""

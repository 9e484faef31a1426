"""`tokenbench workload`: the plan's shapes, the composition against hand-computed figures, and the command
end to end on the tiny model (CPU), including bad input and an interrupted run."""
import json
import math

import pytest

from bench.cli import main
from bench.errors import UserError
from bench.workload import compose as comp
from bench.workload.plan import affine_deviation, make_spec, piecewise_mean
from costmodel.workload_economics import workload_economics

FAST = ["--model", "tiny", "--device", "cpu", "--budget-s", "0.02"]


def test_chunked_step_carries_c_isl_over_osl_prompt_tokens():
    spec = make_spec(256, 64, [1, 4, 16, 64], 256)
    for c in spec.concurrency:
        s = spec.chunked_step(c)
        assert s.decode_rows == c and s.prompt_tokens == c * 256 / 64
        assert s.chunk_seqs * s.chunk_tokens == pytest.approx(s.prompt_tokens, abs=s.chunk_seqs)
        assert s.prefix == (256 - s.chunk_tokens) // 2
    assert spec.decode_contexts == (257, 288, 320)


def test_prefill_bound_when_the_budget_is_short():
    s = make_spec(1024, 64, [64], 512).chunked_step(64)  # wants 1024 prompt tokens a step, 512 allowed
    assert s.decode_rows == 32 and s.prompt_tokens == 512 and "prefill-bound" in s.note
    assert s.chunk_seqs == 1 and s.chunk_tokens == 512


def test_prompt_tokens_beyond_one_prompt_split_into_sequences():
    s = make_spec(16, 4, [8], 64).chunked_step(8)  # 32 prompt tokens a step, prompts of 16: two chunks
    assert (s.chunk_seqs, s.chunk_tokens, s.prefix) == (2, 16, 0)


def test_cohort_packs_whole_prompts_into_the_budget_and_chunks_long_ones():
    h = make_spec(8, 4, [5], 16).cohort(5)
    assert h.group_sizes() == [2, 2, 1] and h.chunks(8) == [(8, 0)]
    h = make_spec(10, 4, [1], 4).cohort(1)
    assert h.group_sizes() == [1] and h.chunks(10) == [(4, 0), (4, 4), (2, 8)]


def test_chunk_larger_than_all_prompts_is_clipped_with_a_note():
    spec = make_spec(32, 8, [1, 2], 4096)
    assert spec.chunk == 64 and "clipped" in spec.notes[0]


@pytest.mark.parametrize("isl,osl,chunk", [(0, 8, 8), (8, 1, 8), (8, 8, 0)])
def test_impossible_sizes_are_refused(isl, osl, chunk):
    with pytest.raises(UserError):
        make_spec(isl, osl, [1], chunk)


def test_piecewise_mean_and_affine_check():
    assert piecewise_mean([(1, 1.0), (5, 5.0)], 1, 5) == pytest.approx(3.0)
    assert piecewise_mean([(1, 1.0), (3, 1.0), (5, 5.0)], 1, 5) == pytest.approx((1 + 1 + 1 + 3 + 5) / 5)
    assert affine_deviation([(1, 1.0), (3, 3.0), (5, 5.0)]) == 0
    assert affine_deviation([(1, 1.0), (3, 4.0), (5, 5.0)]) == pytest.approx(0.25)


def _hand_steps(spec):
    """Affine step times: mixed 10 ms + 0.1 ms per context past the first; decode 6 ms + the same."""
    steps = {}
    lo = spec.decode_contexts[0]
    for key in comp.needed_keys(spec, list(spec.concurrency)):
        if key.phase == "mixed":
            s = 0.010 + 1e-4 * (key.context - lo)
        elif key.phase == "decode":
            s = 0.006 + 1e-4 * (key.context - lo)
        else:
            s = {1: 0.05, 2: 0.08}[key.batch]
        steps[key] = comp.WorkloadStep(key, s)
    return steps


HEADER = comp.Header(device="cpu", model="tiny", precision="fp32", memory_bytes=10**12, weight_bytes=10**6,
                     kv_bytes_per_token=1000)


def test_composition_equals_the_hand_computed_figures():
    spec = make_spec(32, 8, [2], 64)
    (chunked, c1), (cohort, c2) = comp.compose(HEADER, spec, _hand_steps(spec))
    # chunked: contexts 33..40, mean step 10 ms + 0.1 ms x 3.5; decode-only 6.35 ms
    step, dec = 0.01035, 0.00635
    assert c1.step_seconds == pytest.approx(step) and c1.decode_only_seconds == pytest.approx(dec)
    # a 64-token budget finishes both 32-token prompts in one step (g = 2): they arrive, are prefilled and
    # decode together, so no decode step carries another request's prompt (f = 0; bench/workload/queueing.py)
    assert c1.prompts_together == 2 and c1.decode_share == 0.0
    wall = 2 * 0.05 + 7 * dec  # both prompts at the alone rate, then 7 decode-only steps
    assert chunked.output_tokens_per_s == pytest.approx(2 * 8 / wall)
    assert chunked.input_tokens_per_s == pytest.approx(2 * 32 / wall)
    assert chunked.total_tokens_per_s == pytest.approx(2 * 40 / wall)
    assert chunked.interactivity == pytest.approx(1 / dec)
    assert chunked.input_time_share == pytest.approx(0.1 / wall)
    assert chunked.ttft_s == pytest.approx(0.1) and chunked.ttft_first_wave_s == pytest.approx(0.1)
    assert chunked.e2e_latency_s == pytest.approx(wall)
    assert c1.affine is True and c1.affine_deviation == pytest.approx(0, abs=1e-12)
    # cohort: both prompts in one prefill (2 x 32 <= 64) = 80 ms, then 7 decode steps at contexts 33..39
    decode = 7 * 0.006 + 1e-4 * sum(range(7))
    wall = 0.08 + decode
    assert c2.wall_seconds == pytest.approx(wall) and c2.decode_seconds == pytest.approx(decode)
    assert cohort.output_tokens_per_s == pytest.approx(2 * 8 / wall)
    assert cohort.input_tokens_per_s == pytest.approx(2 * 32 / wall)
    assert cohort.interactivity == pytest.approx(7 / decode)
    assert cohort.ttft_s == pytest.approx(0.08) and cohort.e2e_latency_s == pytest.approx(wall)
    assert cohort.input_time_share == pytest.approx(0.08 / wall)


def test_additive_costs_add_up_to_the_hour():
    spec = make_spec(32, 8, [2], 64)
    for point, _ in comp.compose(HEADER, spec, _hand_steps(spec)):
        e = workload_economics(point, 3.0, 1.5)
        per_hour = (point.input_tokens_per_s * e.additive_cost_per_mtok_input
                    + point.output_tokens_per_s * e.additive_cost_per_mtok_output) * 3600 / 1e6
        assert per_hour == pytest.approx(3.0)
        assert e.cost_per_mtok_total == pytest.approx(3.0 / (point.total_tokens_per_s * 3600 / 1e6))
        assert e.cost_per_mtok_output == pytest.approx(3.0 / (point.output_tokens_per_s * 3600 / 1e6))
        assert e.tokens_per_s_per_mw == pytest.approx(point.total_tokens_per_s * 1000 / 1.5)
        assert e.joules_per_token == pytest.approx(1500 / point.total_tokens_per_s)


def test_a_concurrency_that_does_not_fit_is_a_row_not_a_crash():
    spec = make_spec(32, 8, [2, 10**6], 64)
    small = comp.Header("cpu", "tiny", "fp32", memory_bytes=10**8, weight_bytes=10**6, kv_bytes_per_token=1000)
    pairs = comp.compose(small, spec, _hand_steps(make_spec(32, 8, [2], 64)))
    big = [p for p, _ in pairs if p.concurrency == 10**6]
    assert len(big) == 2 and all(not p.fits and p.total_tokens_per_s is None for p in big)
    assert big[0].bytes_needed == 10**6 + 1000 * 10**6 * 40
    assert workload_economics(big[0], 2.0, 1.0).cost_per_mtok_total is None
    assert comp.needed_keys(spec, [2]) == comp.needed_keys(make_spec(32, 8, [2], 64), [2])


def test_a_missing_step_leaves_the_point_empty_with_the_reason():
    spec = make_spec(32, 8, [2], 64)
    steps = _hand_steps(spec)
    key = next(k for k in steps if k.phase == "mixed")
    steps[key] = comp.WorkloadStep(key, None, reason="failed its check")
    chunked, _ = comp.compose(HEADER, spec, steps)[0]
    assert chunked.total_tokens_per_s is None and "no valid timing" in chunked.note


def _record(tmp_path):
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 1
    return json.loads(files[0].read_text())


@pytest.fixture(scope="module")
def tiny_workload(command_runner, tmp_path_factory):
    """One `tokenbench workload` on the tiny model (ISL 12, OSL 4, C 1 and 3, chunk 8, priced, --json):
    (results file, stdout, stderr), for the end-to-end test and `show`."""
    path, err, out = command_runner(["workload", *FAST, "--isl", "12", "--osl", "4", "--concurrency", "1,3", "--chunk",
                                     "8", "--price-per-hour", "2", "--power-kw", "1", "--json"],
                                    tmp_path_factory.mktemp("workload"), with_stdout=True)
    return path, out, err


def test_workload_command_end_to_end_on_the_tiny_model(tiny_workload):
    path, stdout, stderr = tiny_workload
    assert [p.suffix for p in sorted(path.parent.iterdir())] == [".csv", ".json"]  # one record, its CSV
    printed, record = json.loads(stdout), json.loads(path.read_text())
    assert printed["run_id"] == record["run_id"] and record["kind"] == "workload" and record["complete"]
    assert all(r["valid"] and r["rel_error"] <= r["tolerance"] for r in record["rows"])  # gated before timed
    assert {r["op"] for r in record["rows"]} == {"layer", "mixed_layer", "prefill_layer", "final_norm", "lm_head"}
    # a 12-token prompt in chunks of 8: the prefill step has two layer rows (8 tokens, then 4 at prefix 8)
    pre = [r for r in record["rows"] if r["op"] == "prefill_layer" and r["step_batch"] == 1]
    assert [(r["chunk_tokens"], r["chunk_prefix"]) for r in pre] == [(8, 0), (4, 8)]
    assert len(record["points"]) == 4 and all(p["total_tokens_per_s"] > 0 for p in record["points"])
    for p, e in zip(record["points"], record["economics"]):
        assert e["cost_per_mtok_total"] == pytest.approx(2 / (p["total_tokens_per_s"] * 3600 / 1e6))
    # every step is layers x its layer rows + final_norm + lm_head over the rows that emit a token
    layers = record["model"]["layers"]
    for s in record["steps"]:
        key = comp.StepKey(**{k: s[k] for k in comp.StepKey.__dataclass_fields__})
        mine = [r for r in record["rows"] if r.get("step_batch") == s["batch"] and r.get("phase") == s["phase"]
                and r.get("step_context") == s["context"] and r["op"] != "final_norm"
                and r.get("chunk_tokens", 0) in (s["chunk_tokens"], r.get("chunk_tokens")) and
                (s["phase"] != "mixed" or r["chunk_tokens"] == s["chunk_tokens"])]
        tail = {r["op"]: r for r in record["rows"] if r.get("phase") == "tail"
                and r["rows"] == s["batch"] + (s["chunk_seqs"] if s["phase"] == "mixed" else 0)}
        expect = layers * sum(r["seconds_p50"] for r in mine) + tail["final_norm"]["seconds_p50"] \
            + tail["lm_head"]["seconds_p50"]
        assert s["seconds"] == pytest.approx(expect), key
    assert "Workload points" in stderr and "chunked" in stderr and "cohort" in stderr


def test_an_interrupted_workload_keeps_its_rows(tmp_path, monkeypatch, capsys):
    import bench.workload.measure_steps as m

    real, calls = m.measure, {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(m, "measure", flaky)
    assert main(["workload", *FAST, "--isl", "8", "--osl", "4", "--concurrency", "1", "--out", str(tmp_path)]) == 130
    record = _record(tmp_path)
    assert len(record["rows"]) == 3 and "interrupted" in record and not record["complete"]
    # every point says it was interrupted, not that a step it needs has no valid timing
    assert record["points"] and all(p["note"] == "interrupted before the steps it needs were measured"
                                    for p in record["points"])
    assert "no valid timing" not in capsys.readouterr().err


def test_sigterm_stops_a_workload_like_ctrl_c(tmp_path, monkeypatch):
    import os
    import signal

    import bench.workload.measure_steps as m

    real, calls = m.measure, {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)

    monkeypatch.setattr(m, "measure", flaky)
    assert main(["workload", *FAST, "--isl", "8", "--osl", "4", "--concurrency", "1", "--out", str(tmp_path)]) == 143
    record = _record(tmp_path)
    assert len(record["rows"]) == 1 and record["interrupted"].startswith("stopped by SIGTERM;")
    assert record["wall_s"] > 0 and not record["complete"]


@pytest.mark.parametrize("argv,expect", [
    (["--isl", "0"], "--isl must be a positive integer"),
    (["--osl", "1"], "--osl must be at least 2"),
    (["--concurrency", "0"], "--concurrency must be positive"),
    (["--concurrency", "2,2"], "lists 2 twice"),
    (["--tp", "2", "--measure-e2e"], "the end-to-end cohort runs on one device"),
    (["--tp", "0"], "--tp must be a positive integer"),
    (["--dtype", "fp8"], "--dtype fp8 cannot be timed here: no FP8 hardware"),
    (["--backend", "torch,torch"], "one backend"),
    (["--backend", "triton"], "cannot be timed on a CPU"),
    (["--model", "mixtral-8x7b"], "is a mixture of experts"),
    (["--chunk", "x"], "--chunk must be a positive integer"),
])
def test_bad_workload_input_is_one_line_exit_2(argv, expect, tmp_path, capsys):
    # the flag under test replaces FAST's own (a flag given twice is refused, never read as the last one)
    given = {a for a in argv if a.startswith("--")}
    fast = [x for i, x in enumerate(FAST) if x not in given and not (i and FAST[i - 1] in given)]
    assert main(["workload", *fast, "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert expect in err and err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.glob("*.json"))  # refused before anything is written or measured


def _hand_record(spec):
    """A workload record of the hand steps, each with FLOPs and bytes, as `tokenbench workload` writes it and
    the store reads it."""
    from bench.records.store import from_dict

    steps = []
    for key, step in _hand_steps(spec).items():
        steps.append({**comp.WorkloadStep(key, step.seconds, flops=10**9, bytes=10**8).to_dict()})
    return from_dict({"schema_version": 2, "kind": "workload", "dtype": "fp32",
                      "device": {"name": "test cpu", "kind": "cpu", "spec": None},
                      "ceilings": {"dtype": "fp32", "measured_gbps": 20.0},
                      "model": {"name": "tiny", "weight_bytes": 10**6, "kv_bytes_per_token": 1000},
                      "workload": {"isl": spec.isl, "osl": spec.osl, "concurrency": list(spec.concurrency),
                                   "chunk": spec.chunk},
                      "rows": [], "steps": steps, "points": []}, "hand record")


def test_projection_carries_each_step_at_its_measured_share_of_the_roofline():
    from bench.configs.device_catalog import lookup
    from bench.workload.projection import project_points

    spec = make_spec(32, 8, [2], 64)
    h200 = lookup("h200")
    pairs = project_points(_hand_record(spec), "h200", as_dtype="bf16")
    (chunked, c1), (cohort, c2) = pairs
    assert chunked.source == "projected" and chunked.device == "h200" and "projected" in chunked.label
    # source bound: bytes / measured copy bandwidth (the record has no FLOP ceiling); target: bf16 halves bytes
    src = 10**8 / 20e9
    tgt = max(10**9 / (h200.peak_tflops["bf16"] * 1e12), 10**8 / 2 / (h200.mem_bw_gbs * 1e9))
    lo = spec.decode_contexts[0]
    mixed = [0.010 + 1e-4 * (ctx - lo) for ctx in range(lo, lo + 8)]
    expect = sum(tgt / (src / s) for s in mixed) / 8  # per context: target bound / source efficiency
    assert c1.step_seconds == pytest.approx(expect)
    # both prompts fit one 64-token step and decode together: no decode step carries a prompt (queueing.py)
    assert c1.decode_share == 0.0 and chunked.interactivity == pytest.approx(1 / c1.decode_only_seconds)


def test_show_prints_a_workload_file_and_names_a_corrupt_field(tiny_workload, tmp_path, capsys):
    path = tmp_path / tiny_workload[0].name  # a copy: this test corrupts it
    path.write_text(tiny_workload[0].read_text())
    capsys.readouterr()
    assert main(["show", str(path)]) == 0
    assert "Workload points" in capsys.readouterr().out
    record = json.loads(path.read_text())
    record["points"][0]["interactivity"] = "fast"
    path.write_text(json.dumps(record))
    assert main(["show", str(path)]) == 2
    err = capsys.readouterr().err
    assert "points[0]: interactivity must be a number" in err and str(path) in err


def test_board_energy_composes_like_the_time_where_every_part_was_metered():
    from dataclasses import replace

    spec = make_spec(32, 8, [2], 64)
    steps = {k: replace(s, board_joules=100 * s.seconds) for k, s in _hand_steps(spec).items()}  # 100 W
    (chunked, c1), (cohort, c2) = comp.compose(HEADER, spec, steps)
    assert chunked.board_joules_per_token == pytest.approx(100 / chunked.total_tokens_per_s)
    assert cohort.board_joules_per_token == pytest.approx(100 / cohort.total_tokens_per_s)
    key = next(k for k in steps if k.phase == "prefill" and k.batch == 2)
    steps[key] = replace(steps[key], board_joules=None)  # one part without a reading: no figure, not a guess
    assert comp.compose(HEADER, spec, steps)[1][0].board_joules_per_token is None


def test_fp8_weights_reach_the_workload_layers(monkeypatch, tmp_path, capsys):
    """Where FP8 can be timed (faked here: the CPU computes FP8 through torch's emulation), --dtype fp8 gives
    bf16 activations with FP8 projection weights in every layer and the LM head, checked then timed."""
    import kernels.fp8
    import kernels.fp8_linear

    for module in (kernels.fp8, kernels.fp8_linear):
        monkeypatch.setattr(module, "support" if module is kernels.fp8 else "timing_support", lambda device: (True, ""))
    assert main(["workload", *FAST, "--isl", "8", "--osl", "2", "--concurrency", "1", "--dtype", "fp8",
                 "--out", str(tmp_path)]) == 0
    record = _record(tmp_path)
    assert record["dtype"] == "fp8" and record["activation_dtype"] == "bf16"
    assert all(p["precision"] == "fp8" for p in record["points"])
    layers = [r for r in record["rows"] if r["op"].endswith("layer")]
    assert layers and all(r["valid"] and r["shape"]["weights"] == "fp8" for r in layers)


def test_measure_e2e_sets_measured_beside_composed_for_every_cohort(tmp_path, capsys):
    assert main(["workload", *FAST, "--isl", "8", "--osl", "3", "--concurrency", "1,2", "--chunk", "16",
                 "--measure-e2e", "--out", str(tmp_path)]) == 0
    record = _record(tmp_path)
    cohorts = [c for c in record["compositions"] if c["engine_model"] == "prefill-then-decode"]
    assert len(cohorts) == 2 and len(record["e2e"]) == 2
    for c, e in zip(cohorts, record["e2e"]):
        assert e["ok"] and e["reference_error"] <= e["tolerance"]  # the cohort passed float64 before it was timed
        assert c["measured_wall_seconds"] == pytest.approx(e["wall_s"])
        assert c["measured_over_composed"] == pytest.approx(e["wall_s"] / c["wall_seconds"])
        assert c["agrees"] == (abs(c["measured_over_composed"] - 1) <= comp.E2E_TOLERANCE)
        assert e["decode_contexts"] == [9, 10] and e["composed_wall_s"] == pytest.approx(c["wall_seconds"])
    assert "meas./comp." in capsys.readouterr().err


@pytest.mark.skipif(not __import__("os").environ.get("TOKENBENCH_SLOW_TESTS"),
                    reason="the 1B model end to end takes about 3 minutes and 6 GiB on a 2-core CPU (model build, float64 "
                           "check, GEMM calibration): set TOKENBENCH_SLOW_TESTS=1 to run it")
def test_measure_e2e_on_the_1b_model_at_a_small_workload(tmp_path, capsys):
    """llama-3.2-1b at ISL 16 / OSL 4, C 1 and 2: every cohort float64-checked, then timed beside its
    composition (the tiny-model test above runs in CI; this one on request)."""
    assert main(["workload", "--model", "llama-3.2-1b", "--device", "cpu", "--dtype", "fp32", "--budget-s", "0.05",
                 "--isl", "16", "--osl", "4", "--concurrency", "1,2", "--chunk", "32", "--measure-e2e",
                 "--out", str(tmp_path)]) == 0
    record = _record(tmp_path)
    assert len(record["e2e"]) == 2 and all(e["ok"] for e in record["e2e"])
    cohorts = [c for c in record["compositions"] if c["engine_model"] == "prefill-then-decode"]
    assert all(c["measured_over_composed"] > 0 for c in cohorts)


def test_a_cohort_that_does_not_fit_is_a_row_and_the_others_are_measured(tmp_path, capsys, monkeypatch):
    import bench.workload.e2e as e2e

    fit = e2e.fit_reason

    def refuse_two(model, dtype, device, concurrency, *args, **kwargs):
        return "weights + KV cache need 99 GiB (test)" if concurrency == 2 else fit(model, dtype, device, concurrency,
                                                                                    *args, **kwargs)

    monkeypatch.setattr(e2e, "fit_reason", refuse_two)
    assert main(["workload", *FAST, "--isl", "8", "--osl", "3", "--concurrency", "1,2,3", "--chunk", "16",
                 "--measure-e2e", "--out", str(tmp_path)]) == 0
    record = _record(tmp_path)
    by_c = {e["concurrency"]: e for e in record["e2e"]}
    assert sorted(by_c) == [1, 2, 3]
    assert not by_c[2]["ok"] and "99 GiB" in by_c[2]["skipped"]
    assert by_c[1]["ok"] and by_c[3]["ok"] and by_c[3]["wall_s"] > 0  # the cohort after it still measured
    cohorts = {c["concurrency"]: c for c in record["compositions"] if c["engine_model"] == "prefill-then-decode"}
    assert "not run" in cohorts[2]["note"] and cohorts[3]["measured_wall_seconds"] > 0
    assert "C=2 not run" in capsys.readouterr().err


def test_a_shorter_e2e_answer_is_compared_at_its_own_osl(tmp_path):
    assert main(["workload", *FAST, "--isl", "8", "--osl", "6", "--concurrency", "1", "--chunk", "16",
                 "--measure-e2e", "--e2e-osl", "3", "--out", str(tmp_path)]) == 0
    record = _record(tmp_path)
    (e,) = record["e2e"]
    (cohort,) = [c for c in record["compositions"] if c["engine_model"] == "prefill-then-decode"]
    assert e["osl"] == 3 and e["decode_contexts"] == [9, 10]
    assert e["composed_wall_s"] < cohort["wall_seconds"]  # the composition at OSL 3, not the point's OSL 6
    assert cohort["measured_over_composed"] == pytest.approx(e["wall_s"] / e["composed_wall_s"])
    assert "OSL 3" in cohort["note"]


def test_cohort_at_a_shorter_osl_reads_the_full_decode_curve():
    spec = make_spec(10, 9, [1], 16)
    steps = {k: comp.WorkloadStep(k, 1.0 if k.phase == "prefill" else 0.01 * k.context)
             for k in comp.cohort_keys(spec, 1)}
    full = comp.cohort_point(comp.Header("d", "m", "fp32", None, 1, 1), spec, 1, steps)[1]
    short = comp.cohort_at_osl(full, spec, 1, steps, 4)
    assert short.prefill_seconds == full.prefill_seconds == 1.0
    assert short.decode_seconds == pytest.approx(0.01 * (11 + 12 + 13))  # contexts ISL+1 .. ISL+3, on the line
    assert short.wall_seconds == pytest.approx(1.0 + short.decode_seconds)


@pytest.mark.parametrize("argv,expect", [
    (["--e2e-osl", "3"], "does nothing without --measure-e2e"),
    (["--measure-e2e", "--e2e-osl", "9"], "between 2 and the workload's OSL"),
    (["--energy", "some"], "energy"),
])
def test_bad_e2e_osl_and_energy_are_one_line_exit_2(argv, expect, tmp_path, capsys):
    assert main(["workload", *FAST, "--osl", "4", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert expect in err and err.count("\n") == 1 and err.startswith("tokenbench: error:")
    assert not list(tmp_path.glob("*.json"))


def test_whole_step_energy_runs_layers_times_each_layer_then_the_tail():
    from bench.workload.step_energy import step_call

    calls = []

    class Case:
        def __init__(self, name):
            self.name = name
            self.impls = {"torch": lambda inputs, n=name: calls.append((n, inputs["seed"]))}

        def make_inputs(self, seed):
            return {"seed": seed}

    run = step_call([Case("layer")], [Case("final_norm"), Case("lm_head")], layers=3, backend="torch")
    run()
    assert [n for n, _ in calls] == ["layer"] * 3 + ["final_norm", "lm_head"]
    assert len({s for _, s in calls}) == 3  # each case its own input set


def test_energy_modes_decide_which_rows_get_a_window():
    from bench.sweeps.decode_sweep import energy_skip_note

    assert energy_skip_note("layer", "rows") is None and energy_skip_note("lm_head", "rows") is None
    assert "per-op" in energy_skip_note("qkv_proj", "rows")
    assert "whole steps only" in energy_skip_note("lm_head", "steps") and energy_skip_note("model", "steps") is None
    assert "--energy off" in energy_skip_note("model", "off")


def test_whole_step_energy_is_one_window_per_step_and_lands_on_the_step(monkeypatch):
    """--energy steps on a stand-in board: one window whose calls are whole steps; joules per step on the step."""
    import torch

    from bench.measure import energy
    from bench.workload import measure_steps, step_energy

    calls = []

    class Case:
        impls = {"torch": lambda inputs: calls.append(inputs)}

        def make_inputs(self, seed):
            return seed

    def board(call, index):
        for _ in range(4):
            call()
        return energy.EnergyReading(joules=12.0, seconds=1.0, calls=4, ticks=10)

    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(energy, "board_window", board)
    joules, why = step_energy.step_board_joules([Case()], [Case(), Case()], layers=2, backend="torch",
                                                cuda_graph=False)
    assert joules == 3.0 and why is None and len(calls) == 4 * (2 + 2)
    plan = type("Plan", (), {"model": type("M", (), {"layers": 2})(), "cuda_graph": False})()
    step = comp.WorkloadStep(comp.StepKey("decode", 1, 9), 0.01)
    assert measure_steps.with_step_energy(plan, step, [Case()], [Case()], "torch").board_joules == 3.0
    monkeypatch.setattr(energy, "board_window", lambda call, index: energy.EnergyReading(reason="counter stalled"))
    empty = measure_steps.with_step_energy(plan, step, [Case()], [Case()], "torch")
    assert empty.board_joules is None and "counter stalled (eager)" in empty.energy_note
    assert empty.to_dict()["energy_note"] and "energy_note" not in step.to_dict()

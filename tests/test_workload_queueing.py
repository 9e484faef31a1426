"""The chunked-prefill engine's time to first token with the wait serving benchmarks include, and its
tokens/s per user at low concurrency (bench/workload/queueing.py), on hand-made steps; and committed
workload files written before it still read and show as written."""
import io
import math

import pytest
from rich.console import Console

from bench.workload import compose as comp
from bench.workload import queueing as q
from bench.workload.plan import make_spec

HEADER = comp.Header(device="cpu", model="tiny", precision="fp32", memory_bytes=10**12, weight_bytes=10**6,
                     kv_bytes_per_token=1000)
P, SD, S = 0.5, 0.02, 0.03  # prefill alone, decode-only step, mixed step (hand-made, flat in context)


def _steps(spec, prefill=P, decode=SD, mixed=S):
    steps = {}
    for key in comp.needed_keys(spec, list(spec.concurrency)):
        s = {"mixed": mixed, "decode": decode}.get(key.phase, prefill * key.batch)
        steps[key] = comp.WorkloadStep(key, s)
    return steps


def _chunked(spec, c, **kw):
    return next((p, k) for p, k in comp.compose(HEADER, spec, _steps(spec, **kw))
                if p.engine_model == "chunked-prefill" and p.concurrency == c)


def test_alone_a_request_is_prefilled_then_decodes_alone():
    spec = make_spec(64, 16, [1], 64)
    point, c = _chunked(spec, 1)
    assert c.decode_share == 0.0 and c.queue_wait_seconds == 0.0
    assert point.ttft_s == pytest.approx(P) and point.ttft_first_wave_s == pytest.approx(P)
    assert point.interactivity == pytest.approx(1 / SD)
    life = P + 15 * SD
    assert point.e2e_latency_s == pytest.approx(life)
    assert point.output_tokens_per_s == pytest.approx(16 / life)
    assert point.total_tokens_per_s == pytest.approx(point.output_tokens_per_s * (64 + 16) / 16)
    assert point.input_tokens_per_s == pytest.approx(point.output_tokens_per_s * 64 / 16)
    assert point.input_time_share == pytest.approx(P / life)


@pytest.mark.parametrize("budget, expect", [(64, [1, 2, 3, 4]), (128, [2, 2, 4, 4]), (96, [1.5, 3, 3, 4])])
def test_requests_sent_at_once_wait_for_the_prompts_ahead_under_the_budget(budget, expect):
    # k-th of 4 prompts of 64 tokens: through the step its last token runs in, at the alone rate P / 64
    assert q.first_wave(64, 4, budget, P) == pytest.approx([P * e for e in expect])


def test_steady_state_shares_decode_steps_with_the_other_requests_prompts():
    spec = make_spec(64, 16, [4], 64)  # budget = one prompt a step: g = 1
    point, c = _chunked(spec, 4)
    m = 4 * 64 / 16  # the mixed step's prompt tokens (plan.py): 16
    f = (4 - 1) * 64 / (15 * m)
    assert c.prompts_together == 1 and c.decode_share == pytest.approx(f)
    tpot = (1 - f) * SD + f * S
    assert point.interactivity == pytest.approx(1 / tpot)
    own = P + 1 * SD  # its prompt in one budget-full step, beside the other three requests' decode rows
    device = 4 * 64 * (S - SD) / m + 15 * SD
    life = max(own + 15 * tpot, device)
    assert point.e2e_latency_s == pytest.approx(life)
    assert point.ttft_s == pytest.approx(life - 15 * tpot)
    assert point.output_tokens_per_s == pytest.approx(4 * 16 / life)  # Little's law: C = requests/s x lifetime
    assert point.ttft_first_wave_s == pytest.approx(P * 2.5)  # median of 1, 2, 3, 4 prompts


def test_arrivals_queue_when_the_device_needs_longer_than_a_requests_own_path():
    # answers of 2 tokens at C 3: the other requests' prompts are more than a request's one decode step can
    # carry (f capped at 1), so each arrival waits for prompt work ahead of it
    spec = make_spec(16, 2, [3], 24)
    mixed = SD + 24 * P / 16  # the mixed step's 24 prompt tokens at the alone rate
    point, c = _chunked(spec, 3, mixed=mixed)
    assert c.decode_share == 1.0 and c.prompts_together == 1
    assert c.own_prefill_seconds == pytest.approx(P + SD)
    device = 3 * P + SD  # three prompts beside the decode rows + the one decode-only step
    assert point.ttft_s == pytest.approx(device - mixed) and c.queue_wait_seconds == pytest.approx(0.5 * P - SD)
    assert point.ttft_s == pytest.approx(c.own_prefill_seconds + c.queue_wait_seconds)
    assert 3 * 2 / point.output_tokens_per_s == pytest.approx(point.ttft_s + mixed)  # Little's law


def test_decode_rows_first_leave_fewer_prompt_tokens_a_step():
    tb, vllm = make_spec(64, 16, [4], 128), make_spec(64, 16, [4], 128, "vllm")
    (_, c_tb), (_, c_v) = _chunked(tb, 4), _chunked(vllm, 4)
    assert c_tb.prompts_together == 2  # 128 prompt tokens beside the decode rows
    assert c_v.prompts_together == 1  # 128 - 3 decode rows leave room for one 64-token prompt
    assert c_v.own_prefill_seconds == pytest.approx(P + math.ceil(64 / 125) * SD)


def test_prefill_bound_keeps_the_mixed_step_throughput_and_waits_for_the_rest():
    spec = make_spec(64, 16, [16], 16)  # 16 x 64 / 16 = 64 prompt tokens a step > 16: D = 4
    point, c = _chunked(spec, 16)
    assert spec.chunked_step(16).decode_rows == 4 and c.decode_share == 1.0
    assert point.output_tokens_per_s == pytest.approx(4 / S) and point.interactivity == pytest.approx(1 / S)
    assert point.ttft_s == pytest.approx(16 * 16 * S / 4 - 15 * S)
    assert point.input_time_share == pytest.approx((S - SD) / S)


def test_board_energy_is_the_rounds_work_over_its_tokens():
    from dataclasses import replace

    spec = make_spec(64, 16, [4], 64)
    steps = {k: replace(s, board_joules=100 * s.seconds) for k, s in _steps(spec).items()}  # 100 W throughout
    point, c = next((p, k) for p, k in comp.compose(HEADER, spec, steps) if p.engine_model == "chunked-prefill")
    m = 4 * 64 / 16
    device = 4 * 64 * (S - SD) / m + 15 * SD  # T_dev: the round's work, here 100 J a second of it
    assert point.board_joules_per_token == pytest.approx(100 * device / (4 * (64 + 16)))


def test_policies_have_their_stated_budgets():
    gib = 2**30
    assert q.policy("vllm").budget("cuda", 80 * gib, "NVIDIA H100 80GB HBM3", 2048) == 8192
    assert q.policy("vllm").budget("cuda", 80 * gib, "NVIDIA A100-SXM4-80GB", 2048) == 2048
    assert q.policy("vllm").budget("cpu", None, "AMD EPYC", 256) == 2048
    assert q.policy("sglang").budget("cuda", 24 * gib, "L4", 2048) == 2048
    assert q.policy("sglang").budget("cuda", 141 * gib, "H200", 2048) == 8192
    assert q.policy("sglang").budget("cuda", 180 * gib, "B200", 2048) == 16384
    assert q.policy("llamacpp").budget("cpu", None, "AMD EPYC", 256) == 2048
    assert q.policy("tokenbench").budget("cpu", None, "AMD EPYC", 256) == 256
    assert q.policy("vllm").decode_counts and q.policy("llamacpp").decode_counts
    assert not q.policy("tokenbench").decode_counts and not q.policy("sglang").decode_counts


STEPS_FILE = "tests/data/workload-cpu-llama-3.2-1b-fp32-steps.json"
SERVED_FILE = "tests/data/served/served-llama-3.2-1b-llamacpp-cpu-256-64.json"
RESULTS_FILE = "results/examples/20261204-175445-amd-epyc-llama-3.2-1b-fp32-workload-256-64.json"


def _table(record) -> str:
    from bench.workload.compose import compositions
    from bench.workload.table import print_workload

    out = io.StringIO()
    print_workload(record, compositions(record), Console(file=out, width=250))
    return out.getvalue()


@pytest.mark.parametrize("path", [RESULTS_FILE, STEPS_FILE])
def test_a_record_written_before_the_queueing_model_shows_as_written(path):
    from bench.records import store

    record = store.load_workload(path)
    assert "ttft_model" not in record.workload
    text = _table(record)
    assert "1st-wave" not in text and "chunked-prefill TTFT" not in text
    chunked = [p for p in record.workload_points if p.engine_model == "chunked-prefill"]
    assert [p.ttft_first_wave_s for p in chunked] == [None] * 3
    assert f"{chunked[0].ttft_s * 1e3:,.0f}" in text  # the TTFT as written (4,166 ms), not recomposed


def test_the_committed_cpu_run_recomposed_under_llama_cpp_s_policy():
    from bench.records import store
    from bench.workload.plan import piecewise_mean
    from bench.workload.recompose import gaps, read_served, recompose

    record = store.load_workload(STEPS_FILE)
    pairs, budget = recompose(record, "llamacpp")
    assert budget == 2048
    steps = {s.key: s for s in (comp.WorkloadStep.from_entry(e) for e in record.steps)}
    alone = next(s.seconds for k, s in steps.items() if k.phase == "prefill" and k.batch == 1)
    decode1 = piecewise_mean([(k.context, s.seconds) for k, s in steps.items() if k.phase == "decode"
                              and k.batch == 1], 257, 320)
    (one, _), (four, c4), (sixteen, c16) = pairs
    assert one.ttft_s == pytest.approx(alone) and one.interactivity == pytest.approx(1 / decode1)
    assert c4.prompts_together == 4 and four.ttft_s == pytest.approx(4 * alone)  # 4 x 256 fit one 2048 step
    assert c16.prompts_together == 7  # 2048 - 15 decode rows leave room for 7 prompts of 256
    assert sixteen.ttft_first_wave_s == pytest.approx(12 * alone)  # median of the 8th (8 P) and 9th (16 P)
    rows = gaps(record, read_served(SERVED_FILE), pairs)
    assert [g.concurrency for g in rows] == [1, 4, 16]
    # the figures the issue measured tokenbench short on: TTFT at C 4 / 16 and tokens/s per user at C 1
    for g in rows:
        assert abs(g.after.ttft_s / g.served.median_ttft_s - 1) < abs(g.before.ttft_s / g.served.median_ttft_s - 1) \
            or g.concurrency == 1
    assert abs(rows[0].after.interactivity / 5.8 - 1) < abs(rows[0].before.interactivity / 5.8 - 1)


def test_recompose_command_prints_before_after_and_served(capsys):
    from bench.cli import main

    assert main(["workload", "--recompose", STEPS_FILE, "--engine-policy", "llamacpp", "--against",
                 SERVED_FILE]) == 0
    err = capsys.readouterr().err
    assert "84.3" in err and "before" in err and "after" in err and "llamacpp" in err


@pytest.mark.parametrize("argv, expect", [
    (["--recompose", STEPS_FILE, "--engine-policy", "tgi"], "--engine-policy must be one of"),
    (["--against", SERVED_FILE], "give --recompose FILE"),
    (["--recompose", STEPS_FILE, "--against", STEPS_FILE], "points[0]: missing or not a number"),
    (["--recompose", STEPS_FILE, "--against", "nope.json"], "served figures file nope.json"),
    (["--engine-policy", "tgi", "--device", "cpu", "--model", "tiny"], "--engine-policy must be one of"),
])
def test_bad_recompose_input_is_one_line_exit_2(argv, expect, capsys):
    from bench.cli import main

    assert main(["workload"] + argv) == 2
    err = capsys.readouterr().err
    assert expect in err and err.count("\n") == 1 and "Traceback" not in err

"""The peer benchmark (`tokenbench peer`, bench/sweeps/hf_peer.py) on the tiny model, one round: rows for
every dtype x batch, both sides checked against float64 and timed, the table printed. No speed is asserted."""
import pytest

pytest.importorskip("transformers", reason="transformers is a test dependency (pip install .[test])")

from bench.cli import main
from bench.configs.model_configs import get_model
from bench.sweeps import hf_peer


def test_tiny_run_fills_every_row_and_prints_the_table():
    plan = hf_peer.PeerPlan(get_model("tiny"), ["fp32", "bf16"], [1, 3], 9, rounds=1, steps=2)
    said = []
    result = hf_peer.run(plan, say=said.append)
    rows = result.rows
    assert [(r.dtype, r.batch) for r in rows] == [("fp32", 1), ("fp32", 3), ("bf16", 1), ("bf16", 3)]
    for r in rows:
        assert r.valid, (r.dtype, r.batch, r.rel_error)
        assert all(len(v) == 1 and v[0] > 0 for v in r.tokens_per_s.values())
        assert r.bound_tokens_per_s > 0 and len(r.ratio()) == 1
    assert said[0].startswith("device: ") and len(said) == 1 + len(rows) and not result.interrupted
    text = hf_peer.table(rows, result.copy_gbps)
    assert "| fp32 | 3 |" in text and "| bf16 | 1 |" in text and "copy bandwidth" in text


def test_the_command_prints_the_table(capsys):
    assert main(["peer", "--model", "tiny", "--context", "9", "--batch", "1", "--dtype", "fp32", "--rounds", "1",
                 "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("device: ") and "| fp32 | 1 |" in out and "tiny, context 9, 1 rounds x 1 steps" in out


def test_a_wrong_side_fails_the_check():
    row = hf_peer.PeerRow("fp32", 1, 9, tolerance=1e-4, rel_error={"tokenbench": 0.5, "transformers": 1e-7})
    assert not row.valid
    row.rel_error["tokenbench"] = float("nan")
    assert not row.valid


@pytest.mark.parametrize("argv", [["--dtype", "fp8"], ["--model", "nope"], ["--model", "mixtral-8x7b"],
                                  ["--batch", "0"], ["--context", "1"], ["--hf-attention", "flash"], ["--bogus"]])
def test_bad_input_is_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(["peer", *argv]))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tokenbench: error:") and "\n" not in err

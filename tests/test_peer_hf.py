"""The peer benchmark's plumbing on the tiny model, one round: rows for every dtype x batch, both sides
checked against float64 and timed, the table printed. No speed is asserted."""
import io

import pytest

pytest.importorskip("transformers", reason="transformers is a test dependency (pip install .[test])")

from bench.sweeps import hf_peer
def test_tiny_run_fills_every_row_and_prints_the_table():
    out = io.StringIO()
    rows = hf_peer.run(["--model", "tiny", "--context", "9", "--batch", "1,3", "--dtype", "fp32,bf16",
                        "--rounds", "1", "--steps", "2"], out=out)
    assert [(r.dtype, r.batch) for r in rows] == [("fp32", 1), ("fp32", 3), ("bf16", 1), ("bf16", 3)]
    for r in rows:
        assert r.valid, (r.dtype, r.batch, r.rel_error)
        assert all(len(v) == 1 and v[0] > 0 for v in r.tokens_per_s.values())
        assert r.bound_tokens_per_s > 0 and len(r.ratio()) == 1
    text = out.getvalue()
    assert "| fp32 | 3 |" in text and "| bf16 | 1 |" in text and "copy bandwidth" in text


def test_a_wrong_side_fails_the_check():
    row = hf_peer.PeerRow("fp32", 1, 9, tolerance=1e-4, rel_error={"tokenbench": 0.5, "transformers": 1e-7})
    assert not row.valid
    row.rel_error["tokenbench"] = float("nan")
    assert not row.valid


@pytest.mark.parametrize("argv", [["--dtype", "fp8"], ["--model", "nope"], ["--batch", "0"],
                                  ["--context", "1"], ["--bogus"]])
def test_bad_input_is_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(hf_peer.main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tokenbench: error:") and "\n" not in err

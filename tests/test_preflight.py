"""Commands check what they are asked before they allocate or launch: verify's memory as run's, tp's values
once in the launcher (not once per rank, then torchrun's report), tp's backend on a CPU."""
import contextlib
import io

import pytest
import torch

from bench.cli import main


def _cli(argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    return code, err.getvalue()


@pytest.mark.parametrize("argv,message", [
    (["verify", "--device", "cpu", "--context", "10000000000"], "cannot verify tiny fp32 at batch 1, context 10000000000"),
    (["verify", "--device", "cpu", "--batch", "100000000000"], "cannot verify tiny fp32 at batch 100000000000"),
    (["verify", "--device", "cpu", "--model", "llama-3.1-405b"], "cannot verify llama-3.1-405b fp32 at batch 1"),
])
def test_verify_refuses_what_does_not_fit_before_allocating(argv, message):
    code, err = _cli(argv)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"tokenbench: error: {message}") and "GiB available" in err


def test_tp_refuses_a_bad_batch_once_before_launching(monkeypatch):
    import bench.commands.tp as tp

    monkeypatch.setattr(tp, "run_group", lambda *a, **k: pytest.fail("launched torchrun"))
    for argv in (["tp", "--tp", "2", "--device", "cpu", "--batch", "0"],
                 ["run", "--tp", "2", "--device", "cpu", "--batch", "0"],
                 ["tp", "--tp", "2", "--device", "cpu", "--context", "x"],
                 ["tp", "--tp", "2", "--device", "cpu", "--price-per-hour", "-1"]):
        code, err = _cli(argv)
        assert code == 2 and err.count("\n") == 1 and err.startswith("tokenbench: error: "), (argv, err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is a CPU's")
def test_tp_refuses_triton_on_a_cpu_up_front(monkeypatch):
    import bench.commands.tp as tp

    monkeypatch.setattr(tp, "run_group", lambda *a, **k: pytest.fail("launched torchrun"))
    code, err = _cli(["tp", "--tp", "2", "--backend", "triton"])
    assert code == 2 and "--backend triton cannot be timed on a CPU" in err


def test_tp_refuses_ranks_whose_memory_does_not_fit(monkeypatch):
    import bench.commands.tp as tp

    monkeypatch.setattr(tp, "run_group", lambda *a, **k: pytest.fail("launched torchrun"))
    code, err = _cli(["tp", "--tp", "2", "--device", "cpu", "--model", "llama-3.1-70b", "--batch", "64",
                      "--context", "1000000"])
    assert code == 2 and "cannot run 2 ranks of llama-3.1-70b" in err and "2 processes" in err

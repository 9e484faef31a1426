"""Every `tokenbench ...` command shown in README.md and docs/*.md runs from a fresh clone.

The command lines are read out of the pages' fenced code blocks. Each runs in-process from the repository root
(bench.cli.main, as `python -m bench` would) and must exit as its line says: 0, or the exit code its comment
documents (`# exit 2: ...`), with a one-line `tokenbench: error:` refusal for 2. What a fresh clone cannot
afford in a test is substituted, never the command's own words:
- every results folder (`--out`) is a temporary one, and `results/RUN.json` is a run committed in results/;
- a command that measures runs at the smallest size: the tiny model (tiny-moe for a mixture-of-experts
  model), batch 1, context 9, concurrency 1, ISL 16 / OSL 4, chunk 8, prompt 16, a 0.01 s budget per case,
  one round of one step, the torch backend (on a CPU Triton only verifies);
- a command that launches a torchrun group (`--tp N`, N > 1) is parsed by the real parser, not launched
  (tests/test_tp.py and tests/test_workload_tp.py run groups of two gloo ranks).
Every line is parsed by the real parser. The README's own lines and every command that neither measures nor
draws run in full every time; a docs/ page's measuring or `report` line (seconds each, minutes under load)
runs in full with TOKENBENCH_SLOW_TESTS=1, as the suite's other slow tests do.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import os

import pytest

from bench.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_FILE = "results/examples/20261129-131228-amd-epyc-llama-3.2-1b-fp32.json"  # a committed CPU run
MEASURING = {"run", "workload", "verify", "peak", "moe", "fp8", "tp", "peer"}
SLOW = MEASURING | {"report"}  # matplotlib figures: seconds a report
SMALL = {"--batch": "1", "--context": "9", "--concurrency": "1", "--isl": "16", "--osl": "4", "--chunk": "8",
         "--prompt": "16", "--budget-s": "0.01", "--rounds": "1", "--steps": "1", "--backend": "torch"}


def shown_commands() -> list[tuple[str, str]]:
    """(where, line) for every `tokenbench ...` line inside a shell block (```sh) of README.md and docs/*.md."""
    found = []
    for page in PAGES:
        fence = None  # the open block's language: only shell blocks (```sh) hold commands, not sample output
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                fence = line.strip()[3:] if fence is None else None
            elif fence in ("sh", "bash", "shell") and line.lstrip().startswith("tokenbench "):
                found.append((f"{page.relative_to(ROOT)}:{number}", line.strip()))
    return found


COMMANDS = shown_commands()


def _split(line: str) -> tuple[list[str], int]:
    """The argv after `tokenbench` and the exit code the line's comment documents (0 when it says none)."""
    text, _, comment = line.partition("  #")
    expected = re.search(r"\bexit (\d)", comment)
    return shlex.split(text)[1:], int(expected.group(1)) if expected else 0


def _set(argv: list[str], flag: str, value: str) -> list[str]:
    if flag in argv:
        i = argv.index(flag)
        return argv[:i + 1] + [value] + argv[i + 2:]
    return argv + [flag, value]


def _options(argv: list[str]) -> set[str]:
    sub = build_parser(argv)._subparsers._group_actions[0].choices[argv[0]]
    return set(sub._option_string_actions)


def _small(argv: list[str]) -> list[str]:
    from bench.configs.model_configs import get_model

    options = _options(argv)
    if "--model" in options:
        model = argv[argv.index("--model") + 1] if "--model" in argv else None
        moe = model is not None and get_model(model).is_moe
        argv = _set(argv, "--model", "tiny-moe" if moe or argv[0] == "moe" else "tiny")
    for flag, value in SMALL.items():
        if flag in argv or (flag in ("--budget-s", "--rounds", "--steps") and flag in options):
            argv = _set(argv, flag, value)
    if argv[0] == "peer":
        argv = _set(argv, "--dtype", "fp32")
    return argv


def test_the_pages_show_commands():
    # an empty list would pass every check below: the pages hold commands of every kind
    assert len(COMMANDS) > 30
    assert {_split(line)[0][0] for _, line in COMMANDS} >= {"run", "workload", "cost", "compare", "report", "show"}


def _argv(line: str) -> list[str]:
    argv, _ = _split(line)
    return [RUN_FILE if a == "results/RUN.json" else a for a in argv]


@pytest.mark.parametrize("where,line", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_a_shown_command_parses(where, line):
    argv = _argv(line)
    try:
        build_parser(argv).parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{where}: `{line}` is not a valid command line (argparse exit {exc.code})")


@pytest.mark.parametrize("where,line", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_a_shown_command_runs_as_documented(where, line, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    _, expected = _split(line)
    argv = _argv(line)
    if "--tp" in argv and int(argv[argv.index("--tp") + 1]) > 1:
        pytest.skip("launches a torchrun group: parsed by test_a_shown_command_parses; tests/test_tp.py runs groups")
    if argv[0] in SLOW and not where.startswith("README") and not os.environ.get("TOKENBENCH_SLOW_TESTS"):
        pytest.skip("a docs/ page's measuring or report line: set TOKENBENCH_SLOW_TESTS=1 to run it in full")
    if argv[0] in MEASURING:
        argv = _small(argv)
        if "--layer-only" in _options(argv) and "--layer-only" not in argv:
            argv.append("--layer-only")  # the layer and the model-level ops, not each op of the layer again
    if "--out" in _options(argv):
        argv = _set(argv, "--out", str(tmp_path / "out"))
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == expected, f"{where}: tokenbench {' '.join(argv)} exited {code}\n{err[-1500:]}"
    if expected == 2:
        assert err.startswith("tokenbench: error:") and err.count("\n") == 1, err

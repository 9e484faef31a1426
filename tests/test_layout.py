"""The layout reads as the pipeline: a module's name says what it holds, once.

Three rules, checked on the files themselves:
- outside bench/commands (one module per CLI verb) no two modules of bench/ and costmodel/ share a file
  name, and none is named like a command, so `tp.py` is always the `tp` command;
- kernels/triton/X.py is the Triton implementation of the op defined in kernels/X.py (the one deliberate
  repeat of a name: one op, two backends), besides the helpers listed below;
- every package of bench/ (but commands/) names each of its modules in its docstring, so the layout README.md describes
  cannot drift from the tree without a test failing.
"""
from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from bench.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
# Triton modules that are not an op's implementation: launcher helpers and the cross-compile checks.
TRITON_HELPERS = {"_common", "compile_check", "compile_check_scale", "compile_check_lowprec", "compile_check_moe"}


def _modules(*folders: str) -> list[Path]:
    out = []
    for folder in folders:
        out += [p for p in (ROOT / folder).rglob("*.py") if p.name != "__init__.py"]
    return out


def _pipeline_modules() -> list[Path]:
    """bench/ and costmodel/ modules other than the command modules, the pytest-benchmark suites and
    pytest's own conftest."""
    return [p for p in _modules("bench", "costmodel")
            if "commands" not in p.parts and "benchmarks" not in p.parts and p.name != "conftest.py"]


def test_no_two_pipeline_modules_share_a_name():
    names = Counter(p.stem for p in _pipeline_modules())
    assert [n for n, k in names.items() if k > 1] == []


def test_no_pipeline_module_is_named_like_a_command():
    clash = sorted(p.relative_to(ROOT).as_posix() for p in _pipeline_modules() if p.stem in COMMANDS)
    assert clash == []


def test_every_command_module_is_registered_and_every_command_has_its_module():
    files = {p.stem for p in (ROOT / "bench" / "commands").glob("*.py")
             if p.name != "__init__.py" and not p.stem.startswith("_")}
    assert files == set(COMMANDS)
    assert {m for m, _ in COMMANDS.values()} == {f"bench.commands.{n}" for n in files}


def test_triton_modules_implement_the_op_of_the_same_name():
    triton = {p.stem for p in (ROOT / "kernels" / "triton").glob("*.py") if p.name != "__init__.py"}
    ops = {p.stem for p in (ROOT / "kernels").glob("*.py")}
    assert sorted(triton - TRITON_HELPERS - ops) == []
    assert TRITON_HELPERS <= triton  # the exception list names files that exist


def test_every_bench_package_names_its_modules_in_its_docstring():
    missing = []
    for init in sorted((ROOT / "bench").glob("*/__init__.py")):
        if init.parent.name == "commands":  # named for their verbs, checked against COMMANDS above
            continue
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        for module in sorted(init.parent.glob("*.py")):
            if module.name != "__init__.py" and module.stem not in doc:
                missing.append(module.relative_to(ROOT).as_posix())
    assert missing == []

"""The layout reads as the pipeline: a module's name says what it holds, once.

Three rules, checked on the files themselves:
- outside bench/commands (one module per CLI verb) no two modules of bench/ and costmodel/ share a file
  name, and none is named like a command, so `tp.py` is always the `tp` command;
- kernels/triton/X.py is the Triton implementation of the op defined in kernels/X.py (the one deliberate
  repeat of a name: one op, two backends), besides the helpers listed below;
- every package of bench/ (but commands/) names each of its modules in its docstring, so the layout docs/architecture.md describes
  cannot drift from the tree without a test failing.
"""
from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from bench.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
# Triton modules that are not an op's implementation: launcher helpers and the cross-compile checks.
TRITON_HELPERS = {"_common", "compile_check", "compile_check_scale", "compile_check_lowprec", "compile_check_moe",
                  "compile_check_attention"}


def _modules(*folders: str) -> list[Path]:
    out = []
    for folder in folders:
        out += [p for p in (ROOT / folder).rglob("*.py") if p.name != "__init__.py"]
    return out


def _pipeline_modules() -> list[Path]:
    """bench/ and costmodel/ modules other than the command modules (the pytest-benchmark suites and their
    conftest live outside the product, in benchmarks/)."""
    return [p for p in _modules("bench", "costmodel") if "commands" not in p.parts]


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


def test_the_product_holds_no_pytest_plugin_or_suite():
    # pytest's conftest and the pytest-benchmark suites are test code: they live in tests/ and benchmarks/
    found = sorted(p.relative_to(ROOT).as_posix() for folder in ("bench", "kernels", "costmodel")
                   for p in (ROOT / folder).rglob("*.py") if p.name == "conftest.py" or p.stem.startswith("test_"))
    assert found == []


def test_no_tracked_file_names_a_document_outside_the_repository():
    # the facts the code and data lean on are in docs/ (docs/sources.md) with their public sources; a file
    # that points at the team's guide, which is not in the repository, points at nothing
    import subprocess

    name = "GUIDE" + ".md"  # spelled in two parts so this file does not name it
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout:
        files = [ROOT / f for f in listed.stdout.split("\0") if f]
    else:  # not a git checkout (an unpacked archive): every file of the tree but its build and cache folders
        skip = {".git", ".venv", "__pycache__", ".pytest_cache", ".benchmarks", "tmp"}
        files = [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]
    naming = sorted(p.relative_to(ROOT).as_posix() for p in files
                    if p.is_file() and name in p.read_bytes().decode("utf-8", "replace"))
    assert naming == []

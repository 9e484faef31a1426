"""The dependency direction of GUIDE.md, read from the source: no import cycles inside bench, kernels and
costmodel; costmodel imports neither torch nor bench; kernels never import bench; no module but the command
line (bench.cli, bench.commands) imports or names bench.commands; and a command parses, calls and prints:
it neither opens, fills nor writes a results record nor composes a step (the logic is below it)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "kernels", "costmodel")
KNOWN_CYCLES: set = set()  # none: kernels.moe routes, then hands the routing to its Triton runner


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


MODULES = _modules()
RAW = {name: _imports(path) for name, path in MODULES.items()}
GRAPH = {name: {d for d in deps if d in MODULES and d != name} for name, deps in RAW.items()}


def _cycles() -> set[tuple[str, ...]]:
    found, state = set(), {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == "open":
                found.add(tuple(stack[stack.index(dep):]))
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(GRAPH):
        if node not in state:
            visit(node, [])
    return found


def test_the_walk_sees_the_real_graph():
    # the walk itself is checked against imports known to exist, so an empty graph cannot pass below
    assert "bench.sweeps.decode_sweep" in GRAPH["bench.commands.run"]
    assert "bench.derive.run_pricing" in GRAPH["bench.sweeps.tp_sweep"]
    assert len(MODULES) > 80


def test_no_import_cycles():
    assert _cycles() <= KNOWN_CYCLES, sorted(_cycles() - KNOWN_CYCLES)


def test_layers_point_one_way():
    wrong = []
    for name, deps in RAW.items():
        top = {d.split(".")[0] for d in deps}
        if name.startswith("costmodel") and top & {"torch", "bench", "kernels", "pynvml", "triton"}:
            wrong.append((name, sorted(top & {"torch", "bench", "kernels", "pynvml", "triton"})))
        if name.startswith("kernels") and "bench" in top:
            wrong.append((name, ["bench"]))
        if (name.startswith("bench") and not name.startswith(("bench.commands", "bench.cli"))
                and any(d.startswith("bench.commands") for d in deps)):
            wrong.append((name, sorted(d for d in deps if d.startswith("bench.commands"))))
    assert not wrong, wrong


def test_only_the_command_line_reaches_the_commands():
    # by import, or by the dotted name a dynamic import (importlib) would use
    wrong = []
    for name, path in MODULES.items():
        if name == "bench.cli" or name.startswith("bench.commands"):
            continue
        if any(d == "bench.commands" or d.startswith("bench.commands.") for d in RAW[name]):
            wrong.append((name, "imports bench.commands"))
        elif "bench.commands" in path.read_text():
            wrong.append((name, "names bench.commands"))
    assert not wrong, wrong


COMMANDS = {name: path for name, path in MODULES.items() if name.startswith("bench.commands.")}
# what opens, fills and writes a results record: the store's writer and its recording guard, the header's
# environment capture; and what composes a step or derives roofline figures
RECORD_WRITERS = {"open_record", "ResultWriter", "recording", "capture", "reopen", "set_measured"}
DERIVERS = ("costmodel.step", "bench.derive.roofline")


def _std_stream(node) -> bool:
    """sys.stdout / sys.stderr (printing), the only things a command may call .write on."""
    return (isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr")
            and isinstance(node.value, ast.Name) and node.value.id == "sys")


def test_commands_neither_write_records_nor_compose_steps():
    assert "bench.commands.fp8" in COMMANDS and "bench.commands._scale_common" in COMMANDS
    wrong = []
    for name, path in COMMANDS.items():
        for node in ast.walk(ast.parse(path.read_text())):
            used = (node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name)
                    else None)
            if used in RECORD_WRITERS:
                wrong.append((name, node.lineno, used))
            if isinstance(node, ast.ImportFrom):
                wrong += [(name, node.lineno, a.name) for a in node.names if a.name in RECORD_WRITERS]
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "write"
                    and not _std_stream(node.func.value)):
                wrong.append((name, node.lineno, "write"))
        wrong += [(name, 0, d) for d in sorted(RAW[name]) if d.startswith(DERIVERS)]
    assert not wrong, wrong

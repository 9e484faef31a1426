"""The dependency direction of GUIDE.md, read from the source: no import cycles inside bench, kernels and
costmodel; costmodel imports neither torch nor bench; kernels never import bench; and no bench module
below the command line imports bench.commands (a command parses, calls and prints; the logic is below)."""
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

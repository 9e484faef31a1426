"""The dependency direction of docs/architecture.md, read from the source, every import at any depth (inside
functions too): the packages stand in one declared order and a module imports only its own package or a
lower one, so no two packages import each other; no import cycles between modules inside bench, kernels and
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


# The packages, lowest first (docs/architecture.md): a module may import its own package and any package
# before it, never one after it. kernels (with kernels/triton) and costmodel stand alone; errors (standard
# library only) sits under `bench` alone, its __init__ (the version, and a torchrun rank's die-with-parent request
# made before anything else is imported); parsing and progress are shared by everything above them; the records'
# typed vocabulary sits under the measuring code that fills it; derive reads records; report prints records
# and derived figures; the sweeps and the workload drive the measuring and print with report's tables; the
# command line and the pytest-benchmark suites (benchmarks/, outside the product) use all of it.
PACKAGE_ORDER = ("kernels", "costmodel", "bench.errors", "bench", "bench.parsing", "bench.flag_rules", "bench.progress",
                 "bench.configs", "bench.records", "bench.measure", "bench.derive", "bench.report",
                 "bench.sweeps", "bench.workload", "bench.gpu_check_plan", "bench.gpu_preflight", "bench.gpu_check",
                 "bench.commands",
                 "bench.cli", "bench.__main__", "benchmarks")
ORDERED_ROOTS = ("bench", "kernels", "costmodel", "benchmarks")


def _package(module: str) -> str:
    """The entry of PACKAGE_ORDER a dotted module name belongs to: its longest declared prefix. Every package
    and top-level module of bench/ is declared by name (a new one must take its place in the order)."""
    parts = module.split(".")
    if parts[0] == "bench" and len(parts) > 1:
        assert ".".join(parts[:2]) in PACKAGE_ORDER, f"{module}: declare bench.{parts[1]} in PACKAGE_ORDER"
    while parts and ".".join(parts) not in PACKAGE_ORDER:
        parts.pop()
    assert parts, f"{module} belongs to no package of PACKAGE_ORDER: declare it there"
    return ".".join(parts)


def _every_import(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) for every Import/ImportFrom anywhere in the file, relative ones resolved."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                here = here[:len(here) - (node.level - 1)]
                base = ".".join(here + ([node.module] if node.module else []))
            out.append((node.lineno, base))
    return [(line, name) for line, name in out if name.split(".")[0] in ORDERED_ROOTS]


def _ordered_modules() -> dict[str, Path]:
    out = {}
    for root in ORDERED_ROOTS:
        for path in (ROOT / root).rglob("*.py"):
            out[".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")] = path
    return out


ORDERED = _ordered_modules()
IMPORTS = {name: _every_import(path, name) for name, path in ORDERED.items()}


def test_the_package_walk_sees_imports_inside_functions():
    # bench.measure.timing reaches the device catalog only inside input_sets(): the walk must see it
    assert any(name == "bench.configs.device_catalog" for _, name in IMPORTS["bench.measure.timing"])
    nested = sum(1 for path in ORDERED.values() for fn in ast.walk(ast.parse(path.read_text()))
                 if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom)))
    assert nested > 100  # the function-level imports are many: an empty walk cannot pass the checks below


def test_every_module_belongs_to_a_declared_package():
    assert {_package(name) for name in ORDERED} <= set(PACKAGE_ORDER)
    assert {"bench.commands", "bench.records", "kernels", "costmodel", "benchmarks"} <= {_package(n) for n in ORDERED}


def test_no_import_reaches_a_higher_package():
    rank = {pkg: i for i, pkg in enumerate(PACKAGE_ORDER)}
    wrong = []
    for name, imports in IMPORTS.items():
        mine = _package(name)
        for line, dep in imports:
            theirs = _package(dep)
            if rank[theirs] > rank[mine]:
                wrong.append(f"{ORDERED[name].relative_to(ROOT)}:{line} ({mine}) imports {dep} ({theirs})")
    assert not wrong, "\n".join(wrong)


def test_no_two_packages_import_each_other():
    edges = {(_package(name), _package(dep)) for name, imports in IMPORTS.items() for _, dep in imports}
    mutual = sorted({tuple(sorted(e)) for e in edges if e[0] != e[1] and (e[1], e[0]) in edges})
    assert mutual == []

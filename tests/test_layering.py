"""Dependencies point one way (issue 14): the array layers never import the HyperSpy
glue, and no module imports one that imports it back (function-level imports included)."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "hyperspy_hebt"
#: Modules that work on plain arrays: they must not import the glue above them.
ARRAY_LAYERS = ("tomography", "quantification", "filtering", "diagnostics",
                "cross_validation", "physics", "image_shifts", "metrics", "absorption_correction")
GLUE = ("_reconstruction", "signals", "pipeline", "cli", "io", "alignment", "study",
        "detectors")


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set:
    """Every hyperspy_hebt module ``path`` imports, at any level of the file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("hyperspy_hebt"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("hyperspy_hebt"))
    return found


def _graph() -> dict:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {t for t in _imports(path) if t in modules and t != name}
            for name, path in modules.items()}


def test_array_layers_do_not_import_the_glue():
    upward = []
    for name, targets in _graph().items():
        layer = name.split(".")[1] if "." in name else ""
        if layer in ARRAY_LAYERS:
            upward += [(name, t) for t in targets
                       if t.split(".")[1] in GLUE]
    assert upward == []


def test_no_import_cycles():
    graph = _graph()
    # Packages import their own modules (re-exports): only module-to-module edges count.
    edges = {n: {t for t in ts if not n.startswith(t + ".") and not t.startswith(n + ".")}
             for n, ts in graph.items()}
    cycles = []

    def visit(node, stack, seen):
        for target in edges.get(node, ()):
            if target in stack:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in seen:
                seen.add(target)
                visit(target, stack + [target], seen)

    for start in edges:
        visit(start, [start], {start})
    assert cycles == []

"""No import circles among the project's modules: every import of every module (function-local
ones too) is read with ``ast``, and the graph they make has no cycle."""

import ast

from tests import ROOT

PACKAGES = ("agent", "bench", "listings", "realestate")


def project_modules() -> dict[str, ast.Module]:
    """Every module of the project's packages by dotted name, parsed."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = ast.parse(path.read_text(), filename=str(path))
    return modules


def imports_of(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The project modules that module ``name`` imports, anywhere in its code."""
    package = name if name in known and any(m.startswith(name + ".") for m in known) else ""
    package = package or name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_project_modules_import_each_other_without_a_circle():
    modules = project_modules()
    known = set(modules)
    graph = {name: imports_of(name, tree, known) for name, tree in modules.items()}
    assert len(graph) > 50  # the walk found the project
    assert graph["agent.chat.consumer"] >= {"agent.chat.turn", "agent.models"}
    assert cycles(graph) == []


def test_a_circle_is_found_when_there_is_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    modules = {
        "pkg.one": ast.parse("def f():\n    from pkg import two\n"),
        "pkg.two": ast.parse("from pkg.one import f\n"),
        "pkg": ast.parse(""),
    }
    known = set(modules)
    graph = {name: imports_of(name, tree, known) for name, tree in modules.items()}
    assert cycles(graph) == [["pkg.one", "pkg.two"]]

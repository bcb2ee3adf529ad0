"""The package's shape: no import loops, and every layer imports only downward.

The layer order itself is held by import-linter's contracts in pyproject.toml
(run by ``make lint``); this test adds what those contracts cannot say: that no
two modules import each other, even through imports inside functions or under
``TYPE_CHECKING`` (which hide loops rather than remove them).
"""

from __future__ import annotations

import grimp


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    modules = sorted(m for m in graph.modules if m != "zasync")
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) - {"zasync"}) for m in modules}
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        order[module] = low[module] = len(order)
        stack.append(module)
        on_stack.add(module)
        for other in edges[module]:
            if other not in order:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], order[other])
        if low[module] == order[module]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in modules:
        if module not in order:
            visit(module)
    return found


def test_no_module_imports_another_that_imports_it_back():
    graph = grimp.build_graph("zasync", exclude_type_checking_imports=False)
    assert _cycles(graph) == []


def test_the_loop_finder_finds_a_loop():
    graph = grimp.ImportGraph()
    for module in ("zasync", "zasync.a", "zasync.b", "zasync.c"):
        graph.add_module(module)
    graph.add_import(importer="zasync.a", imported="zasync.b")
    graph.add_import(importer="zasync.b", imported="zasync.a")
    graph.add_import(importer="zasync.c", imported="zasync.a")
    assert _cycles(graph) == [["zasync.a", "zasync.b"]]

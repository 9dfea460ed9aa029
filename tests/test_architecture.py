"""Neither package has an import circle: a module never needs, however indirectly, a module that needs it,
and neither does a sub-package.

The graph is grimp's (the imports of both packages, read from their source): every import counts,
those under `if TYPE_CHECKING:` and those inside functions too. A circle through imports Python
defers or skips at run time cannot fail at import, but a reader following the code meets it all the
same: to understand either module they must first understand the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grimp
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterable

PACKAGES = ("runway_archiver_lambda", "runway_archiver")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # cache_dir=None: nothing written into the work tree.
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=False, cache_dir=None)


def import_circles(graph: grimp.ImportGraph, modules: Iterable[str]) -> list[list[str]]:
    """The modules that import each other in a circle, one sorted group each, over the imports
    among `modules` only. A module is in a circle when it reaches itself; its group is every
    module it reaches that reaches it back."""
    among = set(modules)
    reached = {module: reachable(graph, module, among) for module in among}
    groups = {
        tuple(sorted(other for other in reached[module] if module in reached[other]))
        for module in among
        if module in reached[module]
    }
    return [list(group) for group in sorted(groups)]


def reachable(graph: grimp.ImportGraph, start: str, among: set[str]) -> set[str]:
    """Every module of `among` that `start` imports, directly or through others of `among`."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for imported in graph.find_modules_directly_imported_by(todo.pop()) & among:
            if imported not in seen:
                seen.add(imported)
                todo.append(imported)
    return seen


def describe(graph: grimp.ImportGraph, group: list[str]) -> str:
    """Each import inside a circle, with its line: where to cut it."""
    members = set(group)
    lines = [f"import circle among {', '.join(group)}:"]
    for importer in group:
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & members):
            for detail in graph.get_import_details(importer=importer, imported=imported):
                lines.append(f"  {importer} line {detail['line_number']}: {detail['line_contents']}")
    return "\n".join(lines)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circle_in_the_package(graph: grimp.ImportGraph, package: str) -> None:
    modules = {package} | graph.find_descendants(package)
    circles = import_circles(graph, modules)
    assert not circles, "\n".join(describe(graph, group) for group in circles)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circle_between_the_parts_of_the_package(graph: grimp.ImportGraph, package: str) -> None:
    # Importing a module of a sub-package runs the sub-package's __init__ first, so two sub-packages
    # that import each other fail at import in one order or the other even when no two modules do
    # (browse's server importing cli.output while cli/__init__ imports browse: whichever is imported
    # first fails). A part is a sub-package, or a module directly in the package; grimp's graph does
    # not count the import of a module's parent package, so the parts' graph is drawn here.
    parts = parts_graph(graph, package)
    circles = import_circles(parts, parts.modules)
    assert not circles, "\n".join(describe(parts, group) for group in circles)


def parts_graph(graph: grimp.ImportGraph, package: str) -> grimp.ImportGraph:
    """The imports between the parts of `package` (its sub-packages and its own modules), each
    edge with the first import found that makes it."""
    depth = package.count(".") + 2

    def part(module: str) -> str:
        return ".".join(module.split(".")[:depth])

    modules = graph.find_descendants(package)
    parts = grimp.ImportGraph()
    drawn: set[tuple[str, str]] = set()
    for importer in sorted(modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & modules):
            edge = (part(importer), part(imported))
            if edge[0] != edge[1] and edge not in drawn:
                drawn.add(edge)
                detail = graph.get_import_details(importer=importer, imported=imported)[0]
                parts.add_import(
                    importer=edge[0],
                    imported=edge[1],
                    line_number=detail["line_number"],
                    line_contents=f"{importer}: {detail['line_contents']}",
                )
    return parts


def test_the_lambda_package_imports_nothing_of_the_client_side(graph: grimp.ImportGraph) -> None:
    # The Lambda ships functions/ alone; this also keeps a circle from running through both packages.
    found = graph.find_shortest_chain(importer="runway_archiver_lambda", imported="runway_archiver", as_packages=True)
    assert found is None, f"the Lambda package reaches the client side: {' -> '.join(found)}"


def test_the_graph_counts_type_checking_and_function_level_imports(graph: grimp.ImportGraph) -> None:
    # lifecycle.py names Poller only in annotations (`if TYPE_CHECKING:`); cli/__init__.py imports local/demo.py only
    # inside the function that runs it. Both are edges here, or a circle through them would go unseen.
    assert graph.direct_import_exists(
        importer="runway_archiver_lambda.lifecycle", imported="runway_archiver_lambda.poller"
    )
    assert graph.direct_import_exists(importer="runway_archiver.cli", imported="runway_archiver.local.demo")


def test_a_circle_between_parts_is_found() -> None:
    drawn = grimp.ImportGraph()
    drawn.add_module("pkg")
    for importer, imported in [("pkg.cli", "pkg.browse.model"), ("pkg.browse.model", "pkg.cli.output")]:
        drawn.add_import(importer=importer, imported=imported, line_number=1, line_contents=f"import {imported}")
    assert import_circles(drawn, drawn.modules) == []  # no module reaches itself
    parts = parts_graph(drawn, "pkg")
    assert import_circles(parts, parts.modules) == [["pkg.browse", "pkg.cli"]]
    assert "pkg.browse line 1: pkg.browse.model: import pkg.cli.output" in describe(parts, ["pkg.browse", "pkg.cli"])


def test_a_circle_is_found_and_named() -> None:
    drawn = grimp.ImportGraph()
    for importer, imported in [("pkg.a", "pkg.b"), ("pkg.b", "pkg.c"), ("pkg.c", "pkg.a"), ("pkg.c", "pkg.d")]:
        drawn.add_import(importer=importer, imported=imported, line_number=1, line_contents=f"import {imported}")
    drawn.add_import(importer="pkg.e", imported="pkg.e", line_number=1, line_contents="import pkg.e")
    assert import_circles(drawn, drawn.modules) == [["pkg.a", "pkg.b", "pkg.c"], ["pkg.e"]]
    assert "pkg.c line 1: import pkg.a" in describe(drawn, ["pkg.a", "pkg.b", "pkg.c"])

"""The package's layers (STYLE.md "Layers: who may import whom"): a lower layer never imports an
upper one, and no modules import each other in a circle.

Every import counts, at module level or inside a function; only imports under
``if TYPE_CHECKING:`` (annotations) are left out. A new module must be placed in
a layer below, so that the test says where it belongs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SOURCE = Path(__file__).parents[2] / "src"
PACKAGE = SOURCE / "msgcenter"

#: lowest first; a module belongs to the layer of its longest matching prefix
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "domain",
        (
            "msgcenter",  # the package itself: its version
            "msgcenter.errors",
            "msgcenter.events",
            "msgcenter.render",
            "msgcenter.publications",
            "msgcenter.deliveries",
            "msgcenter.bounces",
            "msgcenter.routing",
            "msgcenter.tracking",
            "msgcenter.archives",
            "msgcenter.reports",
            "msgcenter.operators",
            "msgcenter.designs",
            "msgcenter.instances",
            "msgcenter.workflow_states",
            "msgcenter.queues",
            "msgcenter.webhooks",
        ),
    ),
    (
        "infrastructure",
        (
            "msgcenter.allocator",
            "msgcenter.processes",
            "msgcenter.channels",
            "msgcenter.settings",
            "msgcenter.logs",
            "msgcenter.monitoring",
            "msgcenter.catcher.server",
            "msgcenter.catcher.mailbox",
            "msgcenter.catcher.message",
            "msgcenter.catcher.smsc",
            "msgcenter.catcher",
        ),
    ),
    ("store", ("msgcenter.store",)),
    (
        "services",
        (
            "msgcenter.auth",
            "msgcenter.intake",
            "msgcenter.sending",
            "msgcenter.workflows",
            "msgcenter.execution",
            "msgcenter.control",
            "msgcenter.filepush",
        ),
    ),
    (
        "adapters",
        (
            "msgcenter.web",
            "msgcenter.console",
            "msgcenter.intake.body",
            "msgcenter.intake.rest",
            "msgcenter.intake.soap",
            "msgcenter.control.app",
            "msgcenter.control.design.api",
            "msgcenter.control.design.cli",
            "msgcenter.control.instances.api",
            "msgcenter.control.instances.cli",
            "msgcenter.control.publishing.api",
            "msgcenter.control.publishing.cli",
            "msgcenter.control.archiving.api",
            "msgcenter.control.archiving.cli",
            "msgcenter.control.reports.api",
            "msgcenter.control.reports.cli",
            "msgcenter.catcher.web",
            "msgcenter.filepush.cli",
            "msgcenter.execution.webhooks_cli",
            "msgcenter.execution.bounce_reports_cli",
            "msgcenter.cli",
            "msgcenter.commandline",
            "msgcenter.embedded",
            "msgcenter.demo",
            "msgcenter.__main__",
        ),
    ),
]
RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}
#: the issue's own words: these never import those
NEVER = {
    ("msgcenter.store", "msgcenter.events", "msgcenter.render", "msgcenter.channels"): (
        "msgcenter.web",
        "msgcenter.control",
        "msgcenter.intake",
        "msgcenter.sending",
        "msgcenter.workflows",
        "msgcenter.cli",
    )
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}


def layer_of(module: str) -> str:
    best, found = -1, None
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), name
    assert found is not None, f"{module} is in no layer: add it to LAYERS"
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking(node):
            yield from (n for child in node.orelse for n in _import_nodes(child))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _import_nodes(node)


def imports_of(module: str) -> set[str]:
    """The msgcenter modules ``module`` imports (``from a import b`` counts as ``a.b`` when
    ``b`` is a module)."""
    tree = ast.parse(MODULES[module].read_text("utf-8"))
    found = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level or None]
                base = ".".join([*package, base] if base else package)
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        found |= {name for name in names if name.split(".")[0] == "msgcenter"}
    found.discard(module)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_an_upper_layer(module):
    own = layer_of(module)
    upward = sorted(
        f"{target} ({layer_of(target)})"
        for target in GRAPH[module]
        if RANK[layer_of(target)] > RANK[own]
    )
    assert not upward, f"{module} ({own}) imports {', '.join(upward)}"


def test_lower_layers_never_import_web_control_intake_sending_workflows_or_cli():
    for lower, uppers in NEVER.items():
        for module, targets in GRAPH.items():
            if not module.startswith(lower):
                continue
            # whole names: msgcenter.webhooks (domain) is not under msgcenter.web
            bad = sorted(t for t in targets if any(t == u or t.startswith(u + ".") for u in uppers))
            assert not bad, f"{module} imports {', '.join(bad)}"


def test_no_modules_import_each_other_in_a_circle():
    cycles = [sorted(c) for c in strongly_connected(GRAPH) if len(c) > 1]
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components of ``graph``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_checks_catch_what_they_are_for():
    # the test itself: an upward import and a circle are found
    assert layer_of("msgcenter.store.events") == "store"
    assert layer_of("msgcenter.control.design.api") == "adapters"
    assert layer_of("msgcenter.control.design.service") == "services"
    assert strongly_connected({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [{"a", "b"}, {"c"}]

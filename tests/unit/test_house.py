"""The shape of the code, read from its source with Python's ast: no import circle of
more than 3 modules, no import running back up from the matrix schema or the thin-client
table to the plug-ins, one table of plug-ins (recipes and client kinds, each kind with its
smoke suite)."""
import ast
from pathlib import Path

from mxbuild import plugins

from ..conftest import ROOT

PACKAGE = ROOT / "mxbuild"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _targets(module: str, is_package: bool, node, modules) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[:len(base) - node.level + 1]
            stem = ".".join(base + ([node.module] if node.module else []))
        else:
            stem = node.module or ""
        names = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem
                 for a in node.names]
    out = []
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        # importing a.b.c runs the __init__ of a.b first
        while name.count(".") >= 1:
            if name in modules and name != module and not module.startswith(name + "."):
                out.append(name)
            name = name.rpartition(".")[0]
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the mxbuild modules it imports (at the top or inside a function)."""
    modules = _modules()
    graph = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[module].update(_targets(module, path.name == "__init__.py", node,
                                              modules))
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, edges = work[-1]
            for w in edges:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found, key=len, reverse=True)


def test_no_import_circle_of_more_than_3_modules():
    assert [c for c in circles(import_graph()) if len(c) > 3] == []


def test_the_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e2"}, "e2": {"e"}}
    assert circles(graph) == [["a", "b", "c"], ["e", "e2"]]


def test_no_import_runs_back_up_to_the_plug_ins():
    """The schema and the thin-client interface name plug-ins through the table only;
    the table imports nothing of mxbuild but its errors."""
    graph = import_graph()
    plug_ins = {m for m in graph if m.startswith("mxbuild.recipes")} | {
        e.module for e in plugins.CLIENTS.values()} | {"mxbuild.smoke"}
    assert graph["mxbuild.matrix.schema"] & plug_ins == set()
    assert graph["mxbuild.thin"] & plug_ins == set()
    assert graph["mxbuild.plugins"] == {"mxbuild.errors"}
    assert not any(m.startswith("mxbuild.recipes") for m in graph["mxbuild.matrix"])


def test_the_pipeline_imports_the_table_and_the_table_names_every_plug_in():
    assert "mxbuild.plugins" in import_graph()["mxbuild.pipeline"]
    plugins.load_all()
    assert set(plugins.RECIPES) <= set(plugins.recipe_names())
    for name in plugins.RECIPES:
        assert plugins.recipe(name).name == name
    for name in plugins.CLIENTS:
        assert plugins.client_kind(name).name == name
        suite = plugins.smoke_suite(name)
        assert callable(suite.image) and callable(suite.run)


def test_every_smoke_suite_takes_a_smoke_run():
    """The pipeline calls suite.run(ctx, cell, image, client, SmokeRun)."""
    import inspect
    for name in plugins.CLIENTS:
        params = list(inspect.signature(plugins.smoke_suite(name).run).parameters)
        assert len(params) == 5, (name, params)
        image_params = inspect.signature(plugins.smoke_suite(name).image).parameters
        assert len(image_params) == 4, (name, list(image_params))

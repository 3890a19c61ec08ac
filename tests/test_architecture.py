"""The package's shape: no import circles between peftlab's modules (lazy imports inside functions included)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "peftlab"


def module_names() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        if "metrics" in f.relative_to(PACKAGE).parts:  # the evaluate metric script is loaded by path
            continue
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the peftlab modules it imports anywhere in its file (not counting the package root `peftlab`,
    which imports everything by design, nor a module's own parent packages)."""
    mods = module_names()
    graph = {m: set() for m in mods}
    for m, f in mods.items():
        pkg = m if f.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                targets = [src] + [f"{src}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                if t in mods and t != m and t != "peftlab" and not m.startswith(t + "."):
                    graph[m].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    graph = import_graph()
    assert (
        "peftlab.methods.lora" in graph and "peftlab.registry" in graph["peftlab.methods.lora"]
    )  # the graph is really built
    assert cycles(graph) == [], (
        "import circles (break them: move the shared piece, or register instead of importing)"
    )


CORE = {"config", "inject", "registry", "peft_model", "device"}
UTILITIES = {"models", "data", "train", "rouge", "memory", "scoring", "showdown", "showdown_report"}


def test_the_tree_shows_methods_core_and_classroom():
    from peftlab import METHODS

    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top == CORE | UTILITIES, (
        f"a module at the top that is neither core nor an ML utility: {top - CORE - UTILITIES}"
    )
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")} == {
        "methods",
        "classroom",
        "metrics",
    }
    for m in METHODS.values():
        assert m.apply.__module__.startswith("peftlab.methods."), (
            f"{m.name} is registered outside peftlab/methods"
        )
    # the layers point one way: classroom -> methods/utilities -> core; the core never reaches up
    graph = import_graph()
    for mod, deps in graph.items():
        layer = mod.split(".")[1] if mod.count(".") else ""
        if layer in CORE:
            up = {d for d in deps if d.startswith(("peftlab.methods", "peftlab.classroom"))}
            assert not up, f"core module {mod} imports {up}"
        if layer == "methods":
            assert not {d for d in deps if d.startswith("peftlab.classroom")}, f"{mod} imports classroom code"

"""The house plan, checked: no import circle, transforms/ never imports pipeline/, and no stage imports another.

Read from the source (every import, those under `if TYPE_CHECKING:` too), so a circle that only type checkers
would follow is caught as well.
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "transforms")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, ast.Module]:
    return {
        _module_name(path): ast.parse(path.read_text(encoding="utf-8"))
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
    }


MODULES = _modules()


def _imports(tree: ast.Module) -> set[str]:
    """The project modules a module imports (a name imported from a package counts when it is a submodule)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in MODULES}


GRAPH = {name: _imports(tree) for name, tree in MODULES.items()}


def _is_stage(name: str) -> bool:
    """A module under transforms/ that defines a composite (a beam.PTransform subclass)."""
    return name.startswith("transforms.") and any(
        isinstance(node, ast.ClassDef) and any(ast.unparse(base) in ("beam.PTransform",) for base in node.bases)
        for node in ast.walk(MODULES[name])
    )


def _stage_of(name: str) -> str:
    """The stage a module belongs to: a package under transforms/ is one stage (transforms.neardup), a file another."""
    parts = name.split(".")
    return ".".join(parts[:2])


def test_no_import_circle():
    # A package importing its own submodules is how a package exposes them; only other edges can close a circle.
    edges = {m: {i for i in imports if not m == i.rsplit(".", 1)[0]} for m, imports in GRAPH.items()}
    done, path, circles = set(), [], []

    def visit(module: str) -> None:
        if module in path:
            circles.append(path[path.index(module) :] + [module])
            return
        if module in done:
            return
        path.append(module)
        for imported in sorted(edges[module]):
            visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(edges):
        visit(module)
    assert circles == []


def test_transforms_never_imports_pipeline():
    assert {
        m: sorted(i for i in imports if i.startswith("pipeline"))
        for m, imports in GRAPH.items()
        if m.startswith("transforms")
    } == {m: [] for m in GRAPH if m.startswith("transforms")}


def test_no_stage_imports_another():
    stages = {_stage_of(m) for m in MODULES if _is_stage(m)}
    # The page fetcher (transforms/extract.py) and the page's HTML (page_html.py, page_text.py) define no composite:
    # they are a step of the per-feed loop and its helpers, which a stage may import as it imports charsets.py.
    assert {"transforms.fetch", "transforms.parse", "transforms.clean", "transforms.neardup"} <= stages
    assert not {"transforms.extract", "transforms.page_html", "transforms.page_text"} & stages
    crossings = sorted(
        (module, imported)
        for module, imports in GRAPH.items()
        if _stage_of(module) in stages
        for imported in imports
        if _stage_of(imported) in stages and _stage_of(imported) != _stage_of(module)
    )
    assert crossings == []

"""The architecture, checked from the source: imports form layers, point one way, and never go round in a cycle.

Every import counts, at the top of a module or inside a function: hiding an edge in a function does not
make it go away.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RANKS = {
    # settings and rules schema, Redis key names, logging, Lua scripts: import nothing of ours
    "config": 0, "keys": 0, "logging_setup": 0, "redis_scripts": 0, "redis_connect": 0,
    # what decisions and requests are recorded in
    "metrics": 1, "audit": 1,
    "report": 2, "bitrix": 2,
    # the policies, and the jobs both intake and workers queue
    "policies": 3, "queueing": 3, "portals": 3,
    "startup": 4, "runtime": 4,
    # the two sides: event intake and the workers, which never import each other
    "handlers": 5, "workers": 5,
    "web": 6, "cli": 6,
    "app": 7,
}
ENTRY_POINTS = {"config.gunicorn"}
"""gunicorn's settings file sits with the configuration but is a process's entry point, run by gunicorn and
imported by nothing: it ranks with ``app``."""
SANDBOX_USERS = {"cli"}
"""The sandbox portal stands apart: it imports nothing of ours, and only the CLI (its command) imports it."""


def our_modules() -> dict[str, Path]:
    units = set(RANKS) | {"sandbox"}
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[0] in units:
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(path: Path, module: str, known: dict[str, Path]) -> set[str]:
    """The modules of ours that ``module`` imports anywhere in its source."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in names if name in known}


def graph() -> dict[str, set[str]]:
    known = our_modules()
    return {module: imports_of(path, module, known) - {module} for module, path in known.items()}


def unit(module: str) -> str:
    return "app" if module in ENTRY_POINTS else module.split(".")[0]


def test_every_import_points_down() -> None:
    upward = []
    for module, imported in graph().items():
        for target in imported:
            source_unit, target_unit = unit(module), unit(target)
            if source_unit == target_unit:
                continue
            if source_unit == "sandbox" or (target_unit == "sandbox" and source_unit not in SANDBOX_USERS) or (target_unit != "sandbox" and RANKS[target_unit] >= RANKS[source_unit]):
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_no_import_cycles() -> None:
    edges = graph()
    # a package's __init__ importing its own submodules is how a package offers them, not a cycle
    edges = {module: {t for t in targets if not t.startswith(f"{module}.")} for module, targets in edges.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_config_is_a_leaf() -> None:
    assert {target for module, targets in graph().items() if unit(module) == "config"
            for target in targets if unit(target) != "config"} == set()


def test_importing_the_app_module_imports_no_flask_app_instance() -> None:
    """``app`` offers the factory only: no module-level application object to import by accident."""
    tree = ast.parse((ROOT / "app.py").read_text(encoding="utf-8"))
    assigned = {target.id for node in tree.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    assert "app" not in assigned

"""The layering is a checked contract: import-linter's contracts in pyproject.toml hold, and they
do fail when broken; no import cycle at any depth; modules stay small and are named for what
they hold; only the lease table (and the lease module) writes a lease's fields."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from broker.leases.lease import Lease

ROOT = Path(__file__).resolve().parent.parent
BROKER = ROOT / "broker"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
MAX_MODULE_LINES = 450
LEASE_OWNERS = {"broker/leases/lease.py", "broker/leases/table.py"}


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contracts_hold() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


# (module to append to, the line appended, a contract it must break). Each names a package
# rather than a module: a module's layer is its folder.
BREAKS = [
    ("leases/table.py", "import redis", "Only the cluster's store talks to Redis"),
    ("leases/table.py", "import grpc", "Below the API nothing knows gRPC"),
    ("leases/a_new_module.py", "import grpc", "Below the API nothing knows gRPC"),
    ("leases/runs.py", "import playwright.async_api", "Only the engines touch Playwright"),
    ("engines/base.py", "import broker.leases.table", "only the packages below it"),
    ("model/options.py", "import broker.leases.lease", "only the packages below it"),
    ("api/service.py", "import broker.daemon.tls", "only the packages below it"),
    ("cluster/node.py", "import broker.warm.pool", "only the packages below it"),
    ("model/steps/checks.py", "import broker.model.steps.base", "No import cycles"),
]


@pytest.mark.parametrize(("module", "line", "contract"), BREAKS)
def test_breaking_a_contract_fails_the_check(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    shutil.copytree(BROKER, tmp_path / "broker", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "broker" / module).open("a") as f:
        f.write(f"\n{line}  # noqa: E402\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    broken = [ln for ln in result.stdout.splitlines() if " BROKEN" in ln]
    assert any(contract in ln for ln in broken), result.stdout


def _import_graph() -> grimp.ImportGraph:
    return grimp.build_graph("broker", cache_dir=None)


def _cycles(graph: grimp.ImportGraph, modules: set[str], nested: bool) -> list[list[str]]:
    """Strongly connected groups (more than one member) among `modules`; with `nested`, a
    package stands for everything beneath it."""

    def owner(module: str) -> str | None:
        if module in modules:
            return module
        for candidate in modules if nested else ():
            if module.startswith(candidate + "."):
                return candidate
        return None

    edges: dict[str, set[str]] = {m: set() for m in modules}
    for importer in graph.modules:
        source = owner(importer)
        if source is None:
            continue
        for imported in graph.find_modules_directly_imported_by(importer):
            target = owner(imported)
            if target is not None and target != source:
                edges[source].add(target)
    return _strongly_connected(edges)


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycle_at_any_depth() -> None:
    """Between any two modules, and between the children of every package."""
    graph = _import_graph()
    packages = {m for m in graph.modules if m.startswith("broker") and _is_package(m)}
    found = {
        "broker (modules)": _cycles(
            graph, {m for m in graph.modules if m.startswith("broker")}, nested=False
        )
    }
    for package in packages:
        children = graph.find_children(package)
        found[package] = _cycles(graph, children, nested=True)
    assert not {k: v for k, v in found.items() if v}, found


def test_the_cycle_check_sees_a_cycle() -> None:
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c"]
    ]
    assert _strongly_connected({"a": {"b"}, "b": set()}) == []


def _is_package(module: str) -> bool:
    return (ROOT / module.replace(".", "/") / "__init__.py").exists()


def test_no_module_is_too_long_to_read() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in BROKER.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"split these modules (over {MAX_MODULE_LINES} lines): {long}"


def test_no_module_is_named_for_having_overflowed() -> None:
    """A module is named for the concept it holds, not for being what did not fit elsewhere."""
    vague = re.compile(r"(^|_)(more|misc|utils?|helpers?|extra|other|stuff)$")
    named = [str(p.relative_to(ROOT)) for p in BROKER.rglob("*.py") if vague.search(p.stem)]
    assert not named, f"name these modules for what they hold: {named}"


def _writes_to_lease_fields(tree: ast.AST) -> list[tuple[int, str]]:
    """`<...lease>.<field> = ...`, `... += ...`, and `<...lease>.<field>.add(...)` style calls."""
    fields = {f.name for f in dataclasses.fields(Lease)}
    mutators = {"add", "discard", "remove", "append", "clear", "pop", "update"}

    def is_lease(node: ast.expr) -> bool:
        text = ast.unparse(node)
        return text == "lease" or text.endswith((".lease", "_lease"))

    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in mutators
        ):
            targets = [node.func.value]
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and target.attr in fields
                and is_lease(target.value)
            ):
                found.append((getattr(node, "lineno", 0), ast.unparse(node).splitlines()[0]))
    return found


def test_only_the_lease_table_writes_a_lease() -> None:
    offenders = []
    for path in BROKER.rglob("*.py"):
        relative = str(path.relative_to(ROOT))
        if relative in LEASE_OWNERS:
            continue
        for lineno, code in _writes_to_lease_fields(ast.parse(path.read_text())):
            offenders.append(f"{relative}:{lineno}: {code}")
    assert not offenders, "only broker/leases/table.py may change a lease:\n" + "\n".join(offenders)


def test_the_lease_write_check_sees_writes() -> None:
    sample = "lease.step_count += 1\nself.lease.run_tasks.add(t)\nother.step_count = 2\n"
    assert [line for line, _ in _writes_to_lease_fields(ast.parse(sample))] == [1, 2]

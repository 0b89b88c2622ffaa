"""The layering is a checked contract: import-linter's contracts in pyproject.toml hold, and they
do fail when broken; modules stay small; only the lease table (and the lease module) writes a
lease's fields."""

from __future__ import annotations

import ast
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from broker.lease import Lease

ROOT = Path(__file__).resolve().parent.parent
BROKER = ROOT / "broker"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
MAX_MODULE_LINES = 450
LEASE_OWNERS = {"broker/lease.py", "broker/lease_table.py"}


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


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("lease_table.py", "import grpc", "know neither gRPC"),
        ("runs.py", "import playwright.async_api", "Only the engines touch Playwright"),
        ("engines/base.py", "from broker import lease_table", "edge above the core"),
        ("steps.py", "from broker import lease", "edge above the core"),
        ("options.py", "from broker import steps", "No import cycles"),
    ],
)
def test_breaking_a_contract_fails_the_check(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    shutil.copytree(BROKER, tmp_path / "broker", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    if module == "options.py":  # a cycle needs both directions
        with (tmp_path / "broker" / "steps.py").open("a") as f:
            f.write("\nfrom broker import options as _options  # noqa: E402\n")
    with (tmp_path / "broker" / module).open("a") as f:
        f.write(f"\n{line}  # noqa: E402\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    broken = [ln for ln in result.stdout.splitlines() if ln.rstrip().endswith("BROKEN")]
    assert any(contract in ln for ln in broken), result.stdout


def test_no_module_is_too_long_to_read() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in BROKER.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"split these modules (over {MAX_MODULE_LINES} lines): {long}"


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
    assert not offenders, "only broker/lease_table.py may change a lease:\n" + "\n".join(offenders)


def test_the_lease_write_check_sees_writes() -> None:
    sample = "lease.step_count += 1\nself.lease.run_tasks.add(t)\nother.step_count = 2\n"
    assert [line for line, _ in _writes_to_lease_fields(ast.parse(sample))] == [1, 2]

"""The API definition: buf lint, buf breaking against the previous version, Go code up to date."""

from __future__ import annotations

import difflib
import os
import subprocess
from pathlib import Path

from .polyglot_helpers import ROOT, need_tool, run

# A commit whose message has this line may change protos/ incompatibly (before v1 ships).
ALLOW_BREAKING = "Buf-Breaking: allow"


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def previous_proto_commit() -> tuple[str | None, str]:
    """The commit with the previous version of protos/ (or None), and why.

    With uncommitted changes under protos/, that is HEAD: the working tree is checked against
    what is committed. On a clean tree (as in CI), it is the parent of the last commit that
    changed protos/, so the latest API change is checked. BUF_BREAKING_AGAINST=<git ref> picks
    another base, BUF_BREAKING_AGAINST=none skips the check.
    """
    override = os.environ.get("BUF_BREAKING_AGAINST")
    if override == "none":
        return None, "BUF_BREAKING_AGAINST=none"
    if git("rev-parse", "--verify", "-q", "HEAD").returncode != 0:
        return None, "the repository has no commit yet"
    if override:
        base = override
    elif git("status", "--porcelain", "--", "protos").stdout.strip():
        base = "HEAD"
    else:
        last = git("log", "-1", "--format=%H", "--", "protos").stdout.strip()
        if not last:
            return None, "no commit has protos/ yet"
        if ALLOW_BREAKING in git("log", "-1", "--format=%B", last).stdout:
            return None, f"commit {last[:12]} says '{ALLOW_BREAKING}'"
        base = f"{last[:12]}^"
    found = git("rev-parse", "--verify", "-q", base + "^{commit}")
    if found.returncode != 0:
        return None, f"{base} does not exist (protos/ has no earlier version)"
    sha = found.stdout.strip()
    if not git("ls-tree", "-d", sha, "protos").stdout.strip():
        return None, f"{sha[:12]} has no protos/"
    return sha, f"against {base} ({sha[:12]})"


def test_buf_lint_is_clean() -> None:
    outcome = run([need_tool("buf"), "lint"])
    assert outcome.returncode == 0, outcome.describe()


def test_no_breaking_change_against_the_previous_proto() -> None:
    buf = need_tool("buf")
    sha, why = previous_proto_commit()
    if sha is None:
        print(f"buf breaking: nothing to compare with ({why}); passing")
        return
    depth = int(git("rev-list", "--count", f"{sha}..HEAD").stdout or 0) + 1
    against = f".git#subdir=protos,ref={sha},depth={depth}"
    print(f"buf breaking protos --against '{against}' ({why})")
    outcome = run([buf, "breaking", "protos", "--against", against])
    assert outcome.returncode == 0, (
        f"breaking API change {why}; if it is deliberate, say '{ALLOW_BREAKING}' in the commit "
        f"message\n{outcome.describe()}"
    )


def test_go_code_is_generated_from_the_proto(tmp_path: Path) -> None:
    buf = need_tool("buf")
    need_tool("protoc-gen-go")
    need_tool("protoc-gen-go-grpc")
    outcome = run([buf, "generate", "--output", str(tmp_path)])
    assert outcome.returncode == 0, outcome.describe()
    fresh, committed = tmp_path / "examples/go/gen", ROOT / "examples/go/gen"

    def files(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}

    want, have = files(fresh), files(committed)
    assert want, "buf generate wrote no Go code"
    diff: list[str] = []
    for name in sorted(want.keys() | have.keys()):
        diff += difflib.unified_diff(
            have.get(name, "").splitlines(),
            want.get(name, "").splitlines(),
            f"committed/{name}",
            f"generated/{name}",
            lineterm="",
            n=1,
        )
    assert not diff, (
        "examples/go/gen is stale: run scripts/polyglot.sh, then "
        'PATH="$HOME/.cache/browser-broker/bin:$PATH" buf generate\n' + "\n".join(diff[:60])
    )

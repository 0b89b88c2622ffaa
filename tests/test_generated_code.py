"""The committed generated code is exactly what scripts/gen_protos.py makes from protos/ today.

Fails when someone edits the proto without regenerating, edits generated code by hand, or runs a
different protoc / grpcio-tools / mypy-protobuf than the one pinned. Fix: `python scripts/gen_protos.py`.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gen_protos.py"
COMMITTED = ROOT / "client"
GENERATED_PACKAGE = Path("browserbroker") / "v1"
SUFFIXES = {".py", ".pyi"}


def _generate() -> Callable[[Path], list[Path]]:
    spec = importlib.util.spec_from_file_location("_gen_protos_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generate: Callable[[Path], list[Path]] = module.generate
    return generate


def _code_files(root: Path) -> dict[Path, bytes]:
    return {
        path.relative_to(root): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and path.suffix in SUFFIXES and "__pycache__" not in path.parts
    }


def test_generated_code_matches_a_fresh_generation(tmp_path: Path) -> None:
    out = tmp_path / "out"
    returned = _generate()(out)
    fresh = _code_files(out)
    assert fresh, "the generator produced nothing"
    assert {out / p for p in fresh} >= set(returned)
    # The generator writes only the generated package (imports resolve as browserbroker.v1).
    outside = sorted(str(p) for p in fresh if p.parent != GENERATED_PACKAGE)
    assert not outside, f"generated outside {GENERATED_PACKAGE}: {outside}"

    committed = _code_files(COMMITTED / GENERATED_PACKAGE)
    fresh_here = {p.relative_to(GENERATED_PACKAGE): data for p, data in fresh.items()}
    missing = sorted(str(p) for p in fresh_here.keys() - committed.keys())
    extra = sorted(str(p) for p in committed.keys() - fresh_here.keys())
    assert not missing, f"generated but not committed in client/{GENERATED_PACKAGE}: {missing}"
    assert not extra, f"committed in client/{GENERATED_PACKAGE} but no longer generated: {extra}"

    stale = []
    for name in sorted(fresh_here):
        if fresh_here[name] != committed[name]:
            diff = difflib.unified_diff(
                committed[name].decode(errors="replace").splitlines(),
                fresh_here[name].decode(errors="replace").splitlines(),
                f"committed/{name}",
                f"regenerated/{name}",
                lineterm="",
                n=1,
            )
            stale.append("\n".join(list(diff)[:40]))
    assert not stale, "generated code is stale; run scripts/gen_protos.py:\n" + "\n\n".join(stale)


def test_every_proto_has_generated_modules() -> None:
    protos = sorted((ROOT / "protos").rglob("*.proto"))
    assert protos
    for proto in protos:
        relative = proto.relative_to(ROOT / "protos").with_suffix("")
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi"):
            path = COMMITTED / relative.parent / (relative.name + suffix)
            assert path.is_file(), f"missing {path.relative_to(ROOT)}"

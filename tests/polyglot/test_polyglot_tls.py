"""The TLS documentation runs as written: docs/security.md's openssl block makes the
certificates, a broker serves mutual TLS with a tenant, and every block of the section "TLS,
mutual TLS and tokens" of docs/clients.md (grpcurl, Go, Node.js, Python) connects with them."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import BrokerProcess

from .polyglot_helpers import ROOT, need_tool, run

TOKEN = "documented-tls-token"


def _section(path: Path, heading: str) -> str:
    match = re.search(rf"^{re.escape(heading)}\n(.*?)(?=^## |\Z)", path.read_text(), re.M | re.S)
    assert match, f"no '{heading}' in {path}"
    return match.group(1)


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.M | re.S)


@pytest.mark.browser
def test_tls_docs_run_as_written(tmp_path: Path, fixture_server: Any) -> None:
    for tool in ("openssl", "grpcurl", "go", "node"):
        need_tool(tool)
    (certificates,) = _blocks(_section(ROOT / "docs/security.md", "## Certificates"), "sh")
    made = run(["bash", "-c", "set -eo pipefail\n" + certificates], cwd=tmp_path)
    assert made.returncode == 0, made.describe()
    certs = tmp_path / "certs"
    tenants = [
        {
            "name": "scraper",
            "token_sha256": [hashlib.sha256(TOKEN.encode()).hexdigest()],
            "client_cert_names": ["scraper-client"],
        }
    ]
    broker = BrokerProcess(
        env={
            "BROKER_TLS_CERT_FILE": str(certs / "server.pem"),
            "BROKER_TLS_KEY_FILE": str(certs / "server-key.pem"),
            "BROKER_TLS_CLIENT_CA_FILE": str(certs / "ca.pem"),
            "BROKER_TENANTS": json.dumps(tenants),
        }
    ).start()
    try:
        section = _section(ROOT / "docs/clients.md", "## TLS, mutual TLS and tokens")
        shell = _blocks(section, "sh")
        assert len(shell) == 3, shell
        for block in shell:
            live = (
                re.sub(r"(\.\./\.\./)?certs/", f"{certs}/", block)
                .replace("localhost:50051", f"localhost:{broker.port}")
                .replace("https://example.com/", fixture_server.url("form.html"))
            )
            script = f"set -eo pipefail\nexport BROKER_TOKEN={shlex.quote(TOKEN)}\n{live}"
            outcome = run(["bash", "-c", script], timeout=600)
            assert outcome.returncode == 0, f"{block}\n{outcome.describe()}"
            assert '"tenant": "scraper"' in outcome.stdout or '"ok":true' in outcome.stdout, (
                outcome.describe()
            )
        (python,) = _blocks(section, "python")
        code = python.replace("certs/", f"{certs}/").replace("localhost:50051", broker.address)
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            env={"BROKER_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 0 and done.stdout.strip() == "scraper", done.stderr
        # Without a client certificate the handshake itself is refused.
        refused = run(
            ["grpcurl", "-cacert", str(certs / "ca.pem"), f"localhost:{broker.port}", "list"]
        )
        assert refused.returncode != 0
    finally:
        broker.stop()

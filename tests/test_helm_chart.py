"""The Helm chart is checked as chart repositories check charts, without a cluster.

`helm lint`, then `helm template` over the default values and every value set in the chart's
`ci/` folder, and every rendered object decoded strictly into Kubernetes' own API types by the
Go checker in deploy/helm/check (unknown, misspelt or mistyped fields fail; so do mounts, ports
and selectors that point nowhere). `scripts/helm.sh build` (run by scripts/test) builds helm and
the checker before pytest: nothing is built here, and under CI a missing binary fails.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "browser-broker"
VALUE_SETS = sorted((CHART / "ci").glob("*.yaml"))
RELEASE = "bb"


def built(name: str) -> str:
    found = subprocess.run(
        [str(ROOT / "scripts" / "helm.sh"), "path", name], capture_output=True, text=True
    )
    require(found.returncode == 0, found.stderr.strip() or f"{name} is not built")
    return found.stdout.strip()


@pytest.fixture(scope="module")
def helm() -> str:
    return built("helm")


@pytest.fixture(scope="module")
def checker() -> str:
    return built("check")


def run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120)


def render(helm: str, chart: Path, *flags: str) -> str:
    done = run(helm, "template", RELEASE, str(chart), "--namespace", "browsers", *flags)
    assert done.returncode == 0, f"helm template {' '.join(flags)} failed:\n{done.stderr}"
    return done.stdout


def test_the_full_value_set_exists() -> None:
    assert CHART / "ci" / "full-values.yaml" in VALUE_SETS


@pytest.mark.parametrize(
    "values", [None, *VALUE_SETS], ids=["defaults", *(v.name for v in VALUE_SETS)]
)
def test_lint_passes(helm: str, values: Path | None) -> None:
    flags = ["--strict"] + (["--values", str(values)] if values else [])
    done = run(helm, "lint", str(CHART), *flags)
    assert done.returncode == 0, f"helm lint failed:\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize(
    "values", [None, *VALUE_SETS], ids=["defaults", *(v.name for v in VALUE_SETS)]
)
def test_render_decodes_strictly(helm: str, checker: str, values: Path | None) -> None:
    rendered = render(helm, CHART, *(["--values", str(values)] if values else []))
    done = run(checker, "-", stdin=rendered)
    assert done.returncode == 0, f"strict decoding failed:\n{done.stdout}{done.stderr}"
    assert "0 problems" in done.stdout, done.stdout


def kinds(rendered: str) -> set[str]:
    return {
        line.split(":", 1)[1].strip() for line in rendered.splitlines() if line.startswith("kind:")
    }


def test_default_and_full_renders_hold_what_the_chart_promises(helm: str) -> None:
    defaults = render(helm, CHART)
    assert kinds(defaults) >= {
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "PodDisruptionBudget",
    }
    assert "grpc:\n              port: 50051" in defaults  # native grpc probes
    assert "fieldPath: status.podIP" in defaults  # cluster_advertise from the downward API
    assert "localhostProfile: profiles/browser-broker.json" in defaults
    assert "terminationGracePeriodSeconds: 345" in defaults  # 5 + 300 + 10 + 30
    # The browser jail: required, in a pod whose user namespace lets its /proc be unmasked.
    assert 'browser_jail = "required"' in defaults
    assert "hostUsers: false" in defaults and "procMount: Unmasked" in defaults
    full = render(helm, CHART, "--values", str(CHART / "ci" / "full-values.yaml"))
    assert kinds(full) >= {"ScaledObject", "ServiceMonitor", "NetworkPolicy"}
    # KEDA scales on the cluster's queue too (every pod exports the same depth: its max).
    assert "+ max(broker_cluster_queue_depth{" in full
    assert "localhostProfile: browser-broker" in full and "procMount: Unmasked" in full
    assert "kind: Deployment" in full and "replicas:" not in full.split("kind: Deployment")[1][:400]
    assert "terminationGracePeriodSeconds: 670" in full  # 10 + 600 + 15 + 45


def test_attached_clients_are_off_unless_each_pod_serves_its_own_port(helm: str) -> None:
    """A connect URL names the pod that holds the lease (docs/cluster.md#attached-clients): the
    chart either switches attached clients off, or opens the attach port on every pod and has
    each pod name its own IP; the Service never carries it (it would pick any pod)."""
    defaults = render(helm, CHART)
    assert 'attach_listen = ""' in broker_toml(defaults)
    assert "name: attach" not in defaults and "ATTACH" not in defaults
    full = render(helm, CHART, "--values", str(CHART / "ci" / "full-values.yaml"))
    assert 'attach_listen = "0.0.0.0:50052"' in broker_toml(full)
    assert "- {name: attach, containerPort: 50052, protocol: TCP}" in full
    assert 'name: BROKER_ATTACH_PUBLIC_URL\n              value: "wss://$(POD_IP):50052"' in full
    service = full.split("kind: Service\n", 1)[1].split("\n---", 1)[0]
    assert "50052" not in service and "attach" not in service
    policy = full.split("kind: NetworkPolicy", 1)[1].split("\n---", 1)[0]
    assert "- ports: [{port: attach, protocol: TCP}]" in policy
    plain = render(helm, CHART, "--set", "attach.enabled=true", "--set", "attach.port=6000")
    assert 'value: "ws://$(POD_IP):6000"' in plain
    named = render(
        helm, CHART, "--set", "attach.enabled=true", "--set", "attach.publicUrl=wss://n.example"
    )
    assert 'value: "wss://n.example"' in named


def test_tls_in_cluster_mode_verifies_one_name_on_every_pod(helm: str) -> None:
    """Pods dial each other at their IPs: each presents the one certificate, whose name (and CA)
    the pods verify on each other, and which the Certificate and the probes name too."""
    rendered = render(helm, CHART, "--values", str(CHART / "ci" / "tls-values.yaml"))
    toml = broker_toml(rendered)
    assert 'cluster_tls_server_name = "nodes.browsers.internal"' in toml
    assert 'cluster_ca_file = "/etc/browser-broker-tls/ca.crt"' in toml
    assert 'cluster_client_cert_file = "/etc/browser-broker-tls/tls.crt"' in toml  # mutual TLS
    certificate = rendered.split("kind: Certificate", 1)[1].split("\n---", 1)[0]
    assert "    - nodes.browsers.internal\n" in certificate
    assert '{name: PROBE_SERVER_NAME, value: "nodes.browsers.internal"}' in rendered
    # By default the name is the Service's, which the Certificate already names (once).
    default = render(
        helm,
        CHART,
        "--values",
        str(CHART / "ci" / "tls-values.yaml"),
        "--set",
        "tls.serverName=",
    )
    assert 'cluster_tls_server_name = "bb-browser-broker.browsers.svc"' in broker_toml(default)
    certificate = default.split("kind: Certificate", 1)[1].split("\n---", 1)[0]
    assert certificate.count("- bb-browser-broker.browsers.svc\n") == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--set", "broker.extraConfig.capacity=3"],
            "broker.extraConfig.capacity: the chart sets capacity itself",
        ),
        (
            ["--set", "broker.allowInsecureRemote=false"],
            "the broker would refuse to start",
        ),
        (
            ["--set", "browserJail.podUserNamespace=false"],
            "browserJail.mode required needs browserJail.podUserNamespace",
        ),
        (["--set", "browserJail.mode=sometimes"], 'browserJail.mode "sometimes": one of'),
        (
            ["--set", "broker.extraConfig.attach_listen=0.0.0.0:1"],
            "the chart sets attach_listen itself",
        ),
        (
            ["--set", "cluster.enabled=false", "--set", "autoscaling.enabled=true"],
            "autoscaling.enabled needs cluster.enabled",
        ),
    ],
    ids=[
        "owned-setting",
        "insecure-off-without-tls",
        "jail-without-user-namespace",
        "jail-mode",
        "owned-attach-setting",
        "autoscaling-alone",
    ],
)
def test_chart_refuses_what_would_not_run(helm: str, flags: list[str], message: str) -> None:
    """Values the broker would refuse at start (or that cannot work) fail at render, saying why."""
    done = run(helm, "template", RELEASE, str(CHART), *flags)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr


@pytest.fixture
def misspelt_chart(tmp_path: Path) -> Iterator[Path]:
    """A copy of the chart whose Deployment has one field misspelt."""
    copy = tmp_path / "browser-broker"
    shutil.copytree(CHART, copy)
    template = copy / "templates" / "deployment.yaml"
    text = template.read_text()
    assert text.count("terminationGracePeriodSeconds:") == 1
    template.write_text(
        text.replace("terminationGracePeriodSeconds:", "terminationGracePeriodSecond:")
    )
    yield copy


def test_a_misspelt_field_fails_the_check(helm: str, checker: str, misspelt_chart: Path) -> None:
    rendered = render(helm, misspelt_chart)  # helm itself renders it without a word
    done = run(checker, "-", stdin=rendered)
    assert done.returncode == 1, done.stdout
    assert 'unknown field "spec.template.spec.terminationGracePeriodSecond"' in done.stdout


def test_a_misspelt_custom_resource_field_fails_the_check(helm: str, checker: str) -> None:
    rendered = render(helm, CHART, "--values", str(CHART / "ci" / "full-values.yaml"))
    broken = rendered.replace("  minReplicaCount:", "  minReplicasCount:", 1)
    assert broken != rendered
    done = run(checker, "-", stdin=broken)
    assert done.returncode == 1, done.stdout
    assert 'unknown field "spec.minReplicasCount"' in done.stdout


def broker_toml(rendered: str) -> str:
    """The ConfigMap's broker.toml: the block scalar under its key, dedented."""
    lines = rendered.splitlines()
    at = lines.index("  broker.toml: |")
    block = []
    for line in lines[at + 1 :]:
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    return "\n".join(block) + "\n"


@pytest.mark.parametrize(
    "values", [None, *VALUE_SETS], ids=["defaults", *(v.name for v in VALUE_SETS)]
)
def test_the_broker_accepts_the_rendered_config(
    helm: str, tmp_path: Path, values: Path | None
) -> None:
    """Every key the chart writes is a setting the broker knows (extra keys are refused), with
    what the pod adds from its environment on top."""
    from broker.runtime.settings import load_settings

    config = tmp_path / "broker.toml"
    flags = ["--show-only", "templates/configmap.yaml"]
    config.write_text(
        broker_toml(render(helm, CHART, *flags, *(["--values", str(values)] if values else [])))
    )
    # What the Deployment's env adds: the tenants (from the Secret), and in cluster mode the
    # Redis URL, the pod IP and the cluster secret.
    pod_env: dict[str, object] = {"tenants": [{"name": "ci", "token_sha256": ["0" * 64]}]}
    if "cluster_name" in config.read_text():
        pod_env |= {
            "cluster_url": "redis://:password@bb-redis:6379/0",
            "cluster_advertise": "10.1.2.3:50051",
            "cluster_secret": "s" * 40,
        }
    if 'attach_listen = "0.0.0.0:' in config.read_text():  # and the pod's own attach URL
        pod_env["attach_public_url"] = "wss://10.1.2.3:50052"
    settings = load_settings(config, **pod_env)
    assert settings.listen == "0.0.0.0:50051"
    assert settings.drain_timeout_s >= 300
    if settings.cluster_url is not None and settings.tls_cert_file is not None:
        assert settings.cluster_tls_server_name and settings.cluster_ca_file is not None

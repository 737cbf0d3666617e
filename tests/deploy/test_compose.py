"""docker-compose.yml and the Dockerfile: the structure, and every file they use exists.

Docker itself is not run here (no daemon on the test machines): these tests read the files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pbx_agent.config import load_config
from pbx_agent.config.types import split_host_port
from pbx_agent.dialplan_check import check_dialplan

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of every bind mount (a volume starting with . or /)."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def test_the_stack_has_the_daemon_postgres_asterisk_and_the_prompts(
    compose: dict[str, Any],
) -> None:
    """The four default services, FreeSWITCH and monitoring behind profiles."""
    services = compose["services"]
    default = {name for name, s in services.items() if "profiles" not in s}
    assert default == {"prompts", "postgres", "asterisk", "pbx-agent"}
    assert services["freeswitch"]["profiles"] == ["freeswitch"]
    assert services["prometheus"]["profiles"] == ["monitoring"]


def test_the_daemon_is_built_from_the_project_dockerfile(compose: dict[str, Any]) -> None:
    """pbx-agent and prompts build the same image from ./Dockerfile."""
    for name in ("pbx-agent", "prompts"):
        assert compose["services"][name]["build"] == "."
        assert compose["services"][name]["image"] == "pbx-agent:local"
    assert (ROOT / "Dockerfile").is_file()


def test_every_file_the_stack_mounts_exists(compose: dict[str, Any]) -> None:
    """Each bind-mounted file or folder is in the repository."""
    missing = [
        f"{name}: {source}"
        for name, service in compose["services"].items()
        for source, _ in bind_mounts(service)
        if not (ROOT / source).exists()
    ]
    assert missing == []


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    """Every named volume a service uses is declared at the top level."""
    declared = set(compose["volumes"])
    used = {
        volume.split(":")[0]
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if not volume.startswith((".", "/"))
    }
    assert used <= declared


def test_asterisk_loads_every_dialplan_sample_unchanged(compose: dict[str, Any]) -> None:
    """Each production sample of dialplan/asterisk is mounted into /etc/asterisk."""
    mounted = {Path(source).name for source, _ in bind_mounts(compose["services"]["asterisk"])}
    samples = {
        p.name
        for p in (ROOT / "dialplan" / "asterisk").iterdir()
        if p.suffix in (".conf", ".sample") and "-test" not in p.name
    }
    assert samples <= mounted


def test_the_daemon_reaches_the_switch_on_loopback_as_the_samples_expect(
    compose: dict[str, Any],
) -> None:
    """The daemon shares the Asterisk network namespace; its config uses 127.0.0.1 for AMI
    and FastAGI, and the dialplan samples call agi://127.0.0.1 at the configured port."""
    daemon = compose["services"]["pbx-agent"]
    assert daemon["network_mode"] == "service:asterisk"
    config = load_config(
        ROOT / "deploy" / "pbx-agent.toml", env={"PBX_AGENT_ASTERISK__SECRET": "x"}
    )
    assert config.asterisk is not None
    assert config.asterisk.ami_host == "127.0.0.1"
    assert check_dialplan(config, ROOT / "dialplan") == []


def test_the_ami_secret_in_the_stack_matches_the_manager_sample(compose: dict[str, Any]) -> None:
    """The default secret given to the daemon is the manager.conf sample's."""
    manager = (ROOT / "dialplan" / "asterisk" / "manager.conf.sample").read_text(encoding="utf-8")
    secret = re.search(r"^secret = (\S+)", manager, re.MULTILINE)
    assert secret is not None
    env = compose["services"]["pbx-agent"]["environment"]["PBX_AGENT_ASTERISK__SECRET"]
    assert env.endswith(f":-{secret.group(1)}}}")


def test_the_metrics_port_is_published_and_scraped(compose: dict[str, Any]) -> None:
    """The metrics bind of the stack's config is published by the asterisk service and is
    the target of the monitoring profile's Prometheus."""
    config = load_config(
        ROOT / "deploy" / "pbx-agent.toml", env={"PBX_AGENT_ASTERISK__SECRET": "x"}
    )
    _, port = split_host_port(config.metrics.bind)
    assert f"{port}:{port}" in compose["services"]["asterisk"]["ports"]
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"asterisk:{port}"]


def test_the_daemon_waits_for_postgres_and_the_rendered_prompts(compose: dict[str, Any]) -> None:
    """Start order: prompts rendered, postgres healthy, then the switch and the daemon."""
    services = compose["services"]
    assert services["asterisk"]["depends_on"]["prompts"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["pbx-agent"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pbx-agent prompts render" in services["prompts"]["command"][0]
    store_url = services["pbx-agent"]["environment"]["PBX_AGENT_STORE__URL"]
    assert store_url.startswith("postgresql+asyncpg://") and "@postgres:5432/" in store_url


def test_the_dockerfile_copies_only_what_exists_and_runs_the_daemon() -> None:
    """Every COPY source is in the repository; the entry point is pbx-agent run."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    for sources in re.findall(r"^COPY (.+) \S+$", text, re.MULTILINE):
        for source in sources.split():
            assert (ROOT / source).exists(), source
    assert 'ENTRYPOINT ["pbx-agent"]' in text
    assert 'CMD ["run"]' in text
    assert "espeak-ng sox" in text


def test_the_grafana_dashboard_uses_only_metrics_the_daemon_exports() -> None:
    """Every pbx_agent_* series in the dashboard's queries is one the daemon registers."""
    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    from pbx_agent.metrics import Metrics  # noqa: PLC0415

    registry = CollectorRegistry()
    Metrics(registry, process_collectors=False)
    exported = {s.name for family in registry.collect() for s in family.samples} | {
        family.name for family in registry.collect()
    }
    # A labelled family has no sample until a label is used: add the suffixes it will have.
    exported |= {f"{n}{suffix}" for n in list(exported) for suffix in SUFFIXES}
    dashboard = (ROOT / "config" / "grafana-dashboard.json").read_text(encoding="utf-8")
    used = set(re.findall(r"pbx_agent_[a-z_]+", dashboard))
    assert used, "the dashboard queries no pbx_agent metric"
    assert used <= exported, used - exported
    # ... and every figure the daemon exports is on it (the process collectors aside).
    families = {family.name for family in registry.collect()}
    shown = {f for f in families if any(u == f or u.startswith(f + "_") for u in used)}
    assert families - shown <= {"pbx_agent_info"}, families - shown - {"pbx_agent_info"}


def test_freeswitch_loads_every_dialplan_sample(compose: dict[str, Any]) -> None:
    """Each sample of dialplan/freeswitch is mounted into the FreeSWITCH service."""
    mounted = {Path(source).name for source, _ in bind_mounts(compose["services"]["freeswitch"])}
    samples = {p.name for p in (ROOT / "dialplan" / "freeswitch").glob("*.xml")}
    assert samples <= mounted


def test_the_freeswitch_daemon_is_wired_to_its_switch_and_its_own_store(
    compose: dict[str, Any],
) -> None:
    """pbx-agent-freeswitch: the switch's network namespace, a valid FreeSWITCH config that
    passes against the samples, the event socket's password, its metrics port published,
    and a store not shared with the Asterisk daemon (it would dial that switch's jobs)."""
    services = compose["services"]
    daemon = services["pbx-agent-freeswitch"]
    assert daemon["profiles"] == ["freeswitch"]
    assert daemon["network_mode"] == "service:freeswitch"
    socket = (ROOT / "dialplan" / "freeswitch" / "event_socket.conf.xml").read_text()
    password = re.search(r'name="password" value="([^"]+)"', socket)
    assert password is not None
    env = daemon["environment"]["PBX_AGENT_FREESWITCH__PASSWORD"]
    assert env.endswith(f":-{password.group(1)}}}")
    assert "PBX_AGENT_STORE__URL" not in daemon["environment"]
    config = load_config(
        ROOT / "deploy" / "pbx-agent.freeswitch.toml", env={"PBX_AGENT_FREESWITCH__PASSWORD": "x"}
    )
    assert config.pbx.kind == "freeswitch"
    assert check_dialplan(config, ROOT / "dialplan") == []
    assert config.store.url.startswith("sqlite+aiosqlite:////var/lib/pbx-agent/data/")
    _, port = split_host_port(config.metrics.bind)
    assert f"{port}:{port}" in services["freeswitch"]["ports"]
    assert f":{port}/healthz" in " ".join(daemon["healthcheck"]["test"])

"""The monitoring profile's alert rules and Grafana dashboard use only metrics the running services and RabbitMQ
really export: the three services run against the real broker, a sample case goes through every kind of event
(accepted and refused reports, a first acknowledgement, a delivery that fails on every channel and escalates, a
dead letter), and their /metrics and RabbitMQ's Prometheus plugin are scraped."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.builders import a_case_report_body, a_victim, the_sample_victims
from tests.system import System, delivered_everywhere

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "rujukan.json"
RABBITMQ_PROMETHEUS = "http://127.0.0.1:15692"

PROMETHEUS_OWN = {"up"}
"""Series Prometheus writes itself for every scrape target, whatever the target exports."""

AN_ADULT_MAN = a_victim(sex="male", age_years=40, full_name="Andi Wijaya")
DESK = "meja.dinsos-bengkayang@example.org"

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: not its functions, aggregations, labels or keywords."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, regexes)
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges, $__rate_interval included
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    candidates = re.finditer(r"(?<![\w.$:])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", expr)
    return {match[1] for match in candidates if match[1] not in _KEYWORDS}


def test_metric_names_are_read_from_promql_without_functions_labels_or_keywords() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (agency, le) (increase(a_bucket{queue=~"x\\\\.y"}[7d]))) '
        "> on (agency) group_left b_total unless max without (le) (c[$__rate_interval]) == bool 0"
    )

    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


def expressions() -> dict[str, str]:
    """Every PromQL expression of the alert rules and the dashboard, by where it is."""
    found: dict[str, str] = {}
    for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            found[f"alert {rule['alert']}"] = rule["expr"]
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    return found


def scrape_jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_prometheus_scrapes_the_three_services_at_their_compose_ports_and_rabbitmq_plugin() -> None:
    jobs = scrape_jobs()
    targets = {config["labels"]["service"]: config["targets"] for config in jobs["rujukan"]["static_configs"]}

    assert targets == {"intake": ["intake:8001"], "referral": ["referral:8002"], "notifier": ["notifier:8003"]}
    assert {
        target
        for job in ("rabbitmq", "rabbitmq-queues")
        for c in jobs[job]["static_configs"]
        for target in c["targets"]
    } == {"rabbitmq:15692"}


def test_the_monitoring_profile_mounts_these_files_and_grafana_reads_the_provisioned_datasource() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    for name in ("prometheus", "grafana"):
        service = compose["services"][name]
        assert service["profiles"] == ["monitoring"]
        sources = [volume.split(":")[0] for volume in service["volumes"]]
        assert [source for source in sources if source.startswith("./") and not (ROOT / source).exists()] == []
    assert (
        "./deploy/rabbitmq/enabled_plugins:/etc/rabbitmq/enabled_plugins:ro"
        in compose["services"]["rabbitmq"]["volumes"]
    )
    assert "rabbitmq_prometheus" in (ROOT / "deploy" / "rabbitmq" / "enabled_plugins").read_text(encoding="utf-8")
    datasources = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    [datasource] = datasources["datasources"]
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    used = {target["datasource"]["uid"] for panel in panels for target in panel.get("targets", [])}
    assert used == {datasource["uid"]}


def exported(text: str) -> set[str]:
    """Names of the samples an exposition holds (a family with no sample yet does not count)."""
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


async def run_every_kind_of_event(system: System) -> None:
    sample = await system.report(a_case_report_body(victims=the_sample_victims()))
    case = await system.case_when(sample.json()["case_id"], delivered_everywhere)
    leg = case["referrals"][0]
    assert (await system.acknowledge(leg["referral_id"], leg["agency_id"])).status_code == 200
    refused = await system.report(a_case_report_body(regency_code="61.99"))
    assert refused.status_code == 422
    # Every channel of everyone at the agency refuses for good: its notifications fail on every channel, are parked
    # as dead letters, reported failed, and the referral escalates at once.
    agency = system.directory.agency("dinsos-bengkayang")
    assert agency is not None
    assert agency.roster is not None
    system.sink.fail_next(agency.id, 410)
    system.smtp.refuse(DESK)
    for officer in agency.roster.officers:
        for channel in officer.channels:
            if channel.kind.value == "email":
                system.smtp.refuse(channel.to)
            else:
                system.gateway.fail_next(channel.to, *([400] * 10))
    failing = await system.report(a_case_report_body(victims=[AN_ADULT_MAN]))

    def escalated(case: dict[str, Any]) -> bool:
        return any(entry["event"] == "escalated" for entry in case["timeline"])

    await system.case_when(failing.json()["case_id"], escalated, timeout=30)


async def scrape_everything(system: System, client: httpx.AsyncClient) -> set[str]:
    names: set[str] = set(PROMETHEUS_OWN)
    for service in ("intake", "referral", "notifier"):
        port = getattr(system.settings, f"{service}_port")
        names |= exported((await client.get(f"http://127.0.0.1:{port}/metrics")).text)
    for job in ("rabbitmq", "rabbitmq-queues"):
        config = scrape_jobs()[job]
        query = urlencode(config.get("params", {}), doseq=True)
        try:
            answer = await client.get(f"{RABBITMQ_PROMETHEUS}{config['metrics_path']}?{query}")
        except httpx.ConnectError:
            pytest.fail("nothing answers on 15692: enable RabbitMQ's plugin (scripts/setup does)")
        names |= exported(answer.text)
    return names


@pytest.mark.rabbit
async def test_every_metric_the_alerts_and_the_dashboard_use_is_exported(system: System) -> None:
    await run_every_kind_of_event(system)
    used = {where: metric_names(expr) for where, expr in expressions().items()}
    assert all(used.values())

    async with httpx.AsyncClient(timeout=15) as client:
        # A counter moves just after the commit another service already saw: scrape again for a few seconds.
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            names = await scrape_everything(system, client)
            missing = {where: sorted(wanted - names) for where, wanted in used.items() if wanted - names}
            if not missing or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.5)

    assert missing == {}

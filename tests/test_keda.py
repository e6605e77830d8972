"""The container docs' manifests: KEDA's ScaledObject and TriggerAuthentication, checked strictly; the server image.

The YAML in docs/containers.md is read with a loader that refuses duplicate keys, then
validated against the fields of KEDA's CRDs (``tests/fixtures/keda/keda-crd-subset.json``,
every object closed, so a misspelt field fails) and the aws-sqs-queue scaler's parameters.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from host.config import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "containers.md"
SCHEMAS = json.loads((ROOT / "tests" / "fixtures" / "keda" / "keda-crd-subset.json").read_text())


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""


def _mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def manifests(text: str) -> list[dict]:
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/containers.md has no yaml block"
    return [document for block in blocks for document in yaml.load_all(block, Loader=StrictLoader) if document]


def check(document: dict) -> None:
    """Validate one KEDA document against its CRD's fields, and an aws-sqs-queue trigger against the scaler's."""
    schema = {**SCHEMAS[document["kind"]], "$defs": SCHEMAS["$defs"]}
    jsonschema.Draft202012Validator(schema).validate(document)
    for trigger in document.get("spec", {}).get("triggers", []):
        if trigger["type"] == "aws-sqs-queue":
            scaler = SCHEMAS["aws-sqs-queue"]
            unknown = set(trigger["metadata"]) - set(scaler["parameters"])
            assert not unknown, f"not parameters of the aws-sqs-queue scaler: {sorted(unknown)}"
            assert set(scaler["required"]) <= set(trigger["metadata"])


def by_kind(documents: list[dict]) -> dict[str, dict]:
    return {document["kind"]: document for document in documents}


def test_the_documented_keda_manifests_are_valid():
    documents = by_kind(manifests(DOC.read_text()))
    for kind in ("ScaledObject", "TriggerAuthentication"):
        check(documents[kind])
    scaled = documents["ScaledObject"]
    trigger = scaled["spec"]["triggers"][0]
    # Scales on queue depth with in-flight messages counted, authenticated by the documented TriggerAuthentication.
    assert trigger["type"] == "aws-sqs-queue" and trigger["metadata"]["scaleOnInFlight"] == "true"
    assert trigger["authenticationRef"]["name"] == documents["TriggerAuthentication"]["metadata"]["name"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == documents["Deployment"]["metadata"]["name"]


def test_the_documented_deployment_probes_and_drains_in_time():
    deployment = by_kind(manifests(DOC.read_text()))["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {item["name"]: item["value"] for item in container["env"]}
    drain = float(env.get("LETSGO_WORKER_DRAIN_SECONDS", next(s.default for s in SETTINGS if s.field == "drain_timeout")))
    assert pod["terminationGracePeriodSeconds"] > drain


@pytest.mark.parametrize(
    "change,problem",
    [
        (lambda text: text.replace("  pollingInterval: 15", "  pollingIntervall: 15"), "pollingIntervall"),
        (lambda text: text.replace('scaleOnInFlight: "true"', "scaleOnInFlight: true"), "is not of type 'string'"),
        (lambda text: text.replace("queueLength: ", "queueLenght: "), "queueLenght"),
        (lambda text: text.replace("  maxReplicaCount: 20", "  maxReplicaCount: 20\n  maxReplicaCount: 30"), "duplicate key"),
        (lambda text: text.replace("provider: aws ", "provider: amazon "), "'amazon' is not one of"),
    ],
    ids=["misspelt field", "unquoted boolean", "misspelt scaler parameter", "duplicate key", "unknown provider"],
)
def test_the_checks_catch_a_broken_manifest(change, problem):
    broken = change(DOC.read_text())
    assert broken != DOC.read_text()
    with pytest.raises((jsonschema.ValidationError, AssertionError, yaml.YAMLError)) as raised:
        documents = by_kind(manifests(broken))
        for kind in ("ScaledObject", "TriggerAuthentication"):
            check(documents[kind])
    assert problem in str(raised.value)


def test_the_server_target_runs_serve_sqs_with_a_healthcheck_on_livez():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    server = next(stage for stage in stages if stage.split("\n", 1)[0].endswith(" AS server"))
    assert "HEALTHCHECK" in server and "/livez" in server
    command = next(line for line in server.splitlines() if line.startswith("CMD "))
    assert "exec letsgo-worker serve --sqs" in command and "LETSGO_WORKER_QUEUE_URL" in command
    assert "USER " in server and "LETSGO_WORKER_HOST=0.0.0.0" in server
    # The Lambda image stays the default target: the last stage.
    assert stages[-1].split("\n", 1)[0].endswith(" AS lambda")

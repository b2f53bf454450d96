"""Checks of the Helm chart, run by .ci/helm-check: Topics/ consistency, lint, rendering with several
values files through Helm's own Go SDK, Kubernetes schema validation of every rendered manifest,
refusal of bad values, and the built worker started exactly as the chart renders it."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import helm_python
import kubernetes_validate.utils as kv
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "Helm" / "p2c"
KUBERNETES = "1.30.0"
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "ScaledObject", "KafkaTopic"}
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print(f"  FAIL {message}")


def values_file(name):
    return yaml.safe_load((CHART / "ci" / name).read_text())


def render(values, name="p2c"):
    chart = helm_python.Chart.load(str(CHART))
    manifests = chart.render(values, name=name, namespace="sync", is_install=True)
    documents = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        documents += [doc for doc in yaml.safe_load_all(text) if doc]
    return documents


def kinds(documents, kind):
    return [doc for doc in documents if doc["kind"] == kind]


def topics_declared():
    result = {}
    for file in sorted((ROOT / "Topics").glob("*.json")):
        for topic in json.loads(file.read_text())["topics"]:
            result[topic["name"]] = topic
    return result


print("chart topics/ against Topics/")
source = {p.name: p.read_bytes() for p in (ROOT / "Topics").glob("*.json")}
copy = {p.name: p.read_bytes() for p in (CHART / "topics").glob("*.json")}
check(source == copy, "Helm/p2c/topics/ differs from Topics/: copy Topics/*.json into Helm/p2c/topics/")

print("lint")
for name in [None, "keda.yaml", "strimzi.yaml", "tls-sasl.yaml"]:
    report = helm_python.lint(str(CHART), values_file(name) if name else None, strict=True, kube_version="v" + KUBERNETES)
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + report.get("errors", [])
    check(not problems, f"helm lint --strict ({name or 'defaults'}): {problems}")

print("render and validate")
rendered = {}
for name in [None, "keda.yaml", "strimzi.yaml", "tls-sasl.yaml"]:
    documents = render(values_file(name) if name else None)
    rendered[name] = documents
    for doc in documents:
        label = f"{name or 'defaults'}: {doc['kind']} {doc['metadata']['name']}"
        if doc["kind"] in CUSTOM_KINDS:
            check(doc.get("apiVersion") and doc.get("spec"), f"{label} has no apiVersion or spec")
            continue
        try:
            kv.validate(doc, KUBERNETES, strict=True)
        except kv.ValidationError as error:
            check(False, f"{label}: {error.message} at {list(error.path)}")
        except kv.SchemaNotFoundError as error:
            check(False, f"{label}: no schema ({error})")
    print(f"  {name or 'defaults'}: {len(documents)} manifests")

defaults = rendered[None]
deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in kinds(defaults, "Deployment")}
check(sorted(deployments) == ["crm-to-erp", "erp-to-crm"], f"one Deployment per flow, got {sorted(deployments)}")
for flow, deployment in deployments.items():
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    check(env.get("P2C_TRANSACTIONAL_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
          f"{flow}: P2C_TRANSACTIONAL_ID is the pod name")
    check(container["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{flow}: readiness on /readyz")
    check(container["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{flow}: liveness on /healthz")
    security = container["securityContext"]
    check(security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
          and not security["allowPrivilegeEscalation"], f"{flow}: restrictive container securityContext")
    check(pod["securityContext"]["runAsNonRoot"], f"{flow}: runs as non-root")
    check(pod["terminationGracePeriodSeconds"] > 10, f"{flow}: grace period above the worker's 10 s drain")
    check("P2C_GROUP_INSTANCE_ID" not in env, f"{flow}: dynamic group membership by default")
check(len(kinds(defaults, "PodDisruptionBudget")) == 2, "a PodDisruptionBudget per flow")
config = json.loads(kinds(defaults, "ConfigMap")[0]["data"]["worker.json"])
check(config["delivery"] == "exactly-once", "the default delivery is exactly-once")
check(config["sessionTimeoutMs"] == 15000 and config["shutdownTimeoutMs"] == 8000,
      f"session and shutdown timeouts: {config['sessionTimeoutMs']}, {config['shutdownTimeoutMs']}")
static = render({"worker": {"staticMembership": True}})
for deployment in kinds(static, "Deployment"):
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    check(env.get("P2C_GROUP_INSTANCE_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
          "staticMembership: P2C_GROUP_INSTANCE_ID is the pod name")

keda = rendered["keda.yaml"]
for scaled in kinds(keda, "ScaledObject"):
    flow = scaled["metadata"]["labels"]["app.kubernetes.io/component"]
    side = flow.split("-")[0]
    expected = sorted(t for t, d in topics_declared().items() if d.get("side") == side and d["role"] == "changes")
    got = sorted(t["metadata"]["topic"] for t in scaled["spec"]["triggers"])
    check(got == expected, f"KEDA {flow} triggers on its input topics: {got}")
    check(all(t["metadata"]["consumerGroup"] == f"p2c-{flow}" for t in scaled["spec"]["triggers"]), f"KEDA {flow} group")
check("replicas" not in kinds(keda, "Deployment")[0]["spec"], "with KEDA the Deployment leaves replicas to the scaler")
check(len(kinds(keda, "ServiceMonitor")) == 1 and len(kinds(keda, "PrometheusRule")) == 1, "ServiceMonitor and PrometheusRule")
alerts = [r["alert"] for r in kinds(keda, "PrometheusRule")[0]["spec"]["groups"][0]["rules"]]
check(alerts == ["P2CDeadLettersGrowing", "P2CConsumerLagHigh", "P2CNoProgress"], f"alerts: {alerts}")

strimzi = {t["spec"]["topicName"]: t for t in kinds(rendered["strimzi.yaml"], "KafkaTopic")}
declared = topics_declared()
check(sorted(strimzi) == sorted(declared), f"KafkaTopics are exactly Topics/: {sorted(set(strimzi) ^ set(declared))}")
for name, topic in declared.items():
    resource = strimzi.get(name)
    if resource:
        spec = resource["spec"]
        same = (spec["partitions"] == topic["partitions"] and spec["replicas"] == topic["replicationFactor"]
                and spec["config"]["retention.ms"] == str(topic["retentionMs"])
                and spec["config"]["cleanup.policy"] == topic["cleanupPolicy"])
        check(same, f"KafkaTopic {name} disagrees with Topics/")
        check(resource["metadata"]["labels"]["strimzi.io/cluster"] == "prod-kafka", f"KafkaTopic {name} cluster label")

tls = rendered["tls-sasl.yaml"]
tls_config = json.loads(kinds(tls, "ConfigMap")[0]["data"]["worker.json"])
check(tls_config["kafka"].get("security.protocol") == "SASL_SSL", "TLS + SASL: security.protocol SASL_SSL")
check(tls_config["kafka"].get("ssl.ca.location") == "/etc/p2c/tls/ca.crt", "TLS: CA from the mounted Secret")
check(tls_config["kafka"].get("ssl.certificate.location") == "/etc/p2c/tls/tls.crt", "TLS: client certificate")
check(tls_config["kafka"].get("client.rack") == "eu-west-1a", "kafka.properties pass through")
tls_container = kinds(tls, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in tls_container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
check(secret_env == {"P2C_KAFKA_SASL_USERNAME": "p2c-kafka-user", "P2C_KAFKA_SASL_PASSWORD": "p2c-kafka-user"}, f"SASL from the Secret: {secret_env}")
check(len(kinds(tls, "HorizontalPodAutoscaler")) == 2, "an HPA per flow")

print("bad values are refused")
bad = {
    "unknown delivery": {"worker": {"delivery": "twice"}},
    "negative replicas": {"flows": {"crm-to-erp": {"enabled": True, "replicas": -1}}},
    "replicas above partitions": {"flows": {"erp-to-crm": {"enabled": True, "replicas": 25}}},
    "a typo in a key": {"flows": {"crm-to-erp": {"enabled": True, "replica": 2, "replicas": 1}}},
    "bootstrap without a port": {"kafka": {"bootstrapServers": "kafka"}},
    "KEDA above partitions": {"autoscaling": {"keda": {"enabled": True, "maxReplicas": 30}}},
    "KEDA and HPA together": {"autoscaling": {"keda": {"enabled": True}, "hpa": {"enabled": True}}},
    "SASL without a Secret": {"kafka": {"sasl": {"enabled": True}}},
    "a short grace period": {"terminationGracePeriodSeconds": 5},
    "a shutdown longer than the grace period": {"worker": {"shutdownTimeoutMs": 40000}},
    "a session timeout of one millisecond": {"worker": {"sessionTimeoutMs": 1}},
    "an unknown flow": {"flows": {"both-ways": {"enabled": True, "replicas": 1}}},
}
for label, values in bad.items():
    try:
        render(values)
        check(False, f"{label}: the chart accepted it")
    except Exception as error:  # the SDK raises HelmValuesError or HelmRenderError
        print(f"  refused, {label}: {str(error).splitlines()[0][:150]}")

print("the built worker, started exactly as the chart renders it")
binary = sys.argv[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


broker = subprocess.Popen([binary, "broker", "--topics", str(ROOT / "Topics")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
try:
    bootstrap = broker.stdout.readline().strip()
    port = free_port()
    documents = render({"kafka": {"bootstrapServers": bootstrap}, "worker": {"metricsPort": port, "sessionTimeoutMs": 6000}})
    deployment = next(d for d in kinds(documents, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "crm-to-erp")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    configmap = next(c for c in kinds(documents, "ConfigMap") if c["metadata"]["name"] == deployment["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"])
    with tempfile.TemporaryDirectory() as folder:
        # The pod's mounts, on this machine: the ConfigMap's files, Topics/ (in the image at /etc/p2c/topics).
        mounts = {"/etc/p2c/config": folder, "/etc/p2c/topics": str(ROOT / "Topics")}
        for key, text in configmap["data"].items():
            Path(folder, key).write_text(text)

        def local(value):
            for inside, outside in mounts.items():
                value = value.replace(inside, outside)
            return value

        pod_name = "p2c-crm-to-erp-7d9f8-x2kq4"
        environment = {"PATH": os.environ.get("PATH", "")}
        for entry in container["env"]:
            if "value" in entry:
                environment[entry["name"]] = local(entry["value"])
            elif entry["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.name":
                environment[entry["name"]] = pod_name
        command = [binary if part == "p2c" else local(part) for part in container["command"] + container["args"]]
        worker = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready = False
        deadline = time.time() + 30
        while time.time() < deadline and worker.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{container['readinessProbe']['httpGet']['path']}", timeout=1) as response:
                    ready = response.status == 200
            except Exception:
                pass
            if ready:
                break
            time.sleep(0.2)
        check(ready, "the worker started as the chart renders it turned /readyz ready within 30 s")
        worker.send_signal(signal.SIGTERM)
        try:
            status = worker.wait(timeout=deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
        except subprocess.TimeoutExpired:
            worker.kill()
            status = "still running after the grace period"
        log = worker.stdout.read()
        check(status == 0, f"the worker ended with {status} on SIGTERM")
        check(pod_name in log or ready, "the worker used the pod name as its transactional id")
        print(f"  ready: {ready}, exit on SIGTERM: {status}")
finally:
    broker.send_signal(signal.SIGTERM)
    broker.wait(timeout=30)

if failures:
    print(f"helm checks: {len(failures)} failed")
    sys.exit(1)
print("helm checks: all passed")

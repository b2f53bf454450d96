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
for name in [None, "keda.yaml", "strimzi.yaml", "tls-sasl.yaml", "connectors.yaml"]:
    report = helm_python.lint(str(CHART), values_file(name) if name else None, strict=True, kube_version="v" + KUBERNETES)
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + report.get("errors", [])
    check(not problems, f"helm lint --strict ({name or 'defaults'}): {problems}")

print("render and validate")
rendered = {}
for name in [None, "keda.yaml", "strimzi.yaml", "tls-sasl.yaml", "connectors.yaml"]:
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

connectors = rendered["connectors.yaml"]
members = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in kinds(connectors, "Deployment")}
check(sorted(members) == ["apply-crm", "apply-erp", "capture-crm", "capture-erp", "crm-to-erp", "erp-to-crm"],
      f"a Deployment per capture and apply side besides the flows: {sorted(members)}")
for component in ["apply-crm", "apply-erp", "capture-crm", "capture-erp"]:
    deployment = members[component]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    prefix = "P2C_DATAVERSE" if component.endswith("crm") else "P2C_FNO"
    secrets = {name: e["valueFrom"]["secretKeyRef"]["name"] for name, e in env.items() if "secretKeyRef" in e.get("valueFrom", {})}
    wanted = {f"{prefix}_CLIENT_ID", f"{prefix}_CLIENT_SECRET"} | ({"P2C_CAPTURE_WEBHOOK_KEY"} if component.startswith("capture") else set())
    check(set(secrets) == wanted and set(secrets.values()) == {f"p2c-{component}"}, f"{component}: credentials from its Secret: {secrets}")
    check(container["args"][:3] == [component.split("-")[0], "--side", component.split("-")[1]], f"{component}: args {container['args']}")
    check(container["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{component}: readiness on /readyz")
    check(env[f"{prefix}_URL"]["value"].startswith("https://contoso."), f"{component}: the system's URL")
check("replicas" not in members["apply-crm"]["spec"], "with KEDA apply leaves replicas to the scaler")
erp_env = {e["name"]: e.get("value") for e in members["capture-erp"]["spec"]["template"]["spec"]["containers"][0]["env"]}
check(erp_env.get("P2C_CAPTURE_RECHECK_MS") == "2000", f"the F&O receivers recheck what they publish: {erp_env.get('P2C_CAPTURE_RECHECK_MS')}")
check(members["capture-crm"]["spec"]["replicas"] == 2, "capture replicas as given")
scaled = {s["metadata"]["labels"]["app.kubernetes.io/component"]: s for s in kinds(connectors, "ScaledObject")}
erp_topics = sorted(t["metadata"]["topic"] for t in scaled["apply-erp"]["spec"]["triggers"])
check(erp_topics == ["erp.customers.inbound", "erp.orders.inbound"], f"KEDA apply-erp on its streams' inbound topics: {erp_topics}")
check(all(t["metadata"]["consumerGroup"] == "p2c-apply-erp" for t in scaled["apply-erp"]["spec"]["triggers"]), "KEDA apply-erp group")
receivers = sorted(s["metadata"]["name"] for s in kinds(connectors, "Service") if s["spec"]["ports"][0]["name"] == "webhook")
check(receivers == ["p2c-capture-crm-webhook", "p2c-capture-erp-webhook"], f"a webhook Service per receiving capture: {receivers}")
receiver_env = {e["name"]: e.get("value") for e in members["capture-erp"]["spec"]["template"]["spec"]["containers"][0]["env"]}
check(receiver_env.get("P2C_CAPTURE_WEBHOOK_MAX_BODY_BYTES") == "524288" and receiver_env.get("P2C_CAPTURE_WEBHOOK_MAX_REQUESTS") == "16",
      f"the receivers' body limit and posts at once: {receiver_env.get('P2C_CAPTURE_WEBHOOK_MAX_BODY_BYTES')}, {receiver_env.get('P2C_CAPTURE_WEBHOOK_MAX_REQUESTS')}")
check(int(receiver_env["P2C_CAPTURE_WEBHOOK_MAX_BODY_BYTES"]) * int(receiver_env["P2C_CAPTURE_WEBHOOK_MAX_REQUESTS"]) < 128 * 1024 * 1024 / 4,
      "the receivers' bodies at most a quarter of the memory limit")
policies = kinds(connectors, "NetworkPolicy")
check(len(policies) == 1, f"one NetworkPolicy by default: {len(policies)}")
if policies:
    rules = {r["ports"][0]["port"]: r.get("from") for r in policies[0]["spec"]["ingress"]}
    check(policies[0]["spec"]["policyTypes"] == ["Ingress"] and set(rules) == {"metrics", "webhook"}, f"NetworkPolicy ports: {sorted(rules)}")
    check(all(rules.values()), "NetworkPolicy: both ports only from the given sources by default")
    check(policies[0]["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/instance") == "p2c", "NetworkPolicy selects the release's pods")
check(not kinds(render({"networkPolicy": {"enabled": False}}), "NetworkPolicy"), "networkPolicy.enabled false renders none")
ingress = kinds(connectors, "Ingress")
paths = sorted(p["path"] for p in ingress[0]["spec"]["rules"][0]["http"]["paths"]) if ingress else []
check(paths == ["/dataverse", "/fno"], f"the Ingress routes /dataverse and /fno: {paths}")
check(len(kinds(connectors, "PodDisruptionBudget")) == 6, "a PodDisruptionBudget per Deployment")
connector_file = json.loads(next(c for c in kinds(connectors, "ConfigMap") if c["metadata"]["name"] == "p2c-connectors")["data"]["connector.json"])
check(set(connector_file) == {"sessionTimeoutMs", "shutdownTimeoutMs", "watchdogSeconds", "metricsPort", "kafka"}, f"connector.json: {sorted(connector_file)}")

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
    "capture without its Secret": {"dataverse": {"url": "https://o.crm.dynamics.com", "tenantId": "t"}, "capture": {"crm": {"enabled": True, "company": "USMF"}}},
    "CRM capture without a company": {"dataverse": {"url": "https://o.crm.dynamics.com", "tenantId": "t"}, "capture": {"crm": {"enabled": True, "existingSecret": "s"}}},
    "apply without the system's URL": {"apply": {"erp": {"enabled": True, "existingSecret": "s"}}},
    "a capture mode that does not exist": {"capture": {"crm": {"enabled": False, "mode": "push"}}},
    "apply replicas above partitions": {"fno": {"url": "https://e.operations.dynamics.com", "tenantId": "t"}, "apply": {"erp": {"enabled": True, "existingSecret": "s", "replicas": 25}}},
    "an apply client id that is not a GUID": {"capture": {"erp": {"enabled": False, "applyClientIds": ["apply"]}}},
    "a negative recheck delay": {"capture": {"erp": {"enabled": False, "recheckMs": -1}}},
    "a receiver body limit of 64 MiB": {"webhooks": {"maxBodyBytes": 67108864}},
    "no posts at once": {"webhooks": {"maxRequests": 0}},
    "a NetworkPolicy source that is not a selector": {"networkPolicy": {"metricsFrom": ["monitoring"]}},
}
for label, values in bad.items():
    try:
        render(values)
        check(False, f"{label}: the chart accepted it")
    except Exception as error:  # the SDK raises HelmValuesError or HelmRenderError
        print(f"  refused, {label}: {str(error).splitlines()[0][:150]}")

print("the built worker, capture and apply, started exactly as the chart renders them")
binary = sys.argv[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_as_rendered(documents, component, secrets, port, pod_name):
    """Starts the component's container as its pod would (its mounts, environment and command on this
    machine), waits for /readyz, then SIGTERM: it must exit 0 within the grace period."""
    deployment = next(d for d in kinds(documents, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == component)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    configmap = next(c for c in kinds(documents, "ConfigMap") if c["metadata"]["name"] == pod["volumes"][0]["configMap"]["name"])
    with tempfile.TemporaryDirectory() as folder:
        # The pod's mounts, on this machine: the ConfigMap's files, Topics/ (in the image at /etc/p2c/topics).
        mounts = {"/etc/p2c/config": folder, "/etc/p2c/topics": str(ROOT / "Topics")}
        for key, text in configmap["data"].items():
            Path(folder, key).write_text(text)

        def local(value):
            for inside, outside in mounts.items():
                value = value.replace(inside, outside)
            return value

        environment = {"PATH": os.environ.get("PATH", "")}
        for entry in container["env"]:
            if "value" in entry:
                environment[entry["name"]] = local(entry["value"])
            elif entry["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.name":
                environment[entry["name"]] = pod_name
            elif "secretKeyRef" in entry["valueFrom"]:
                reference = entry["valueFrom"]["secretKeyRef"]
                environment[entry["name"]] = secrets[reference["name"]][reference["key"]]
        command = [binary if part == "p2c" else local(part) for part in container["command"] + container["args"]]
        process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready = False
        deadline = time.time() + 30
        while time.time() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{container['readinessProbe']['httpGet']['path']}", timeout=1) as response:
                    ready = response.status == 200
            except Exception:
                pass
            if ready:
                break
            time.sleep(0.2)
        check(ready, f"{component} started as the chart renders it turned /readyz ready within 30 s")
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=pod["terminationGracePeriodSeconds"])
        except subprocess.TimeoutExpired:
            process.kill()
            status = "still running after the grace period"
        log = process.stdout.read()
        check(status == 0, f"{component} ended with {status} on SIGTERM: {log[-400:]}")
        for secret in secrets.values():
            check(secret["clientSecret"] not in log, f"{component}: no secret in its log")
        print(f"  {component}: ready: {ready}, exit on SIGTERM: {status}")
        return log


def simulator(system, clients):
    arguments = [binary, "simulate", system]
    for client, secret in clients:
        arguments += ["--client", f"{client}:{secret}"]
    process = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = process.stdout.readline().strip()
    tenant = process.stdout.readline().strip().split(" ")[1]
    return process, url, tenant


ids = {component: f"5a1e0c3d-0000-4000-8000-0000000c{index:04d}" for index, component in enumerate(["capture-crm", "apply-crm", "capture-erp", "apply-erp"])}
secrets = {f"p2c-{component}": {"clientId": client, "clientSecret": f"{component}-secret", "webhookKey": "hook"} for component, client in ids.items()}
processes = []
broker = subprocess.Popen([binary, "broker", "--topics", str(ROOT / "Topics")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
processes.append(broker)
try:
    bootstrap = broker.stdout.readline().strip()
    dataverse, dataverse_url, dataverse_tenant = simulator("dataverse", [(ids[c], f"{c}-secret") for c in ["capture-crm", "apply-crm"]])
    fno, fno_url, fno_tenant = simulator("finance-operations", [(ids[c], f"{c}-secret") for c in ["capture-erp", "apply-erp"]])
    processes += [dataverse, fno]
    port = free_port()
    values = {
        "kafka": {"bootstrapServers": bootstrap}, "worker": {"metricsPort": port, "sessionTimeoutMs": 6000},
        "dataverse": {"url": dataverse_url, "tenantId": dataverse_tenant, "authority": dataverse_url},
        "fno": {"url": fno_url, "tenantId": fno_tenant, "authority": fno_url},
        "capture": {
            "crm": {"enabled": True, "company": "USMF", "existingSecret": "p2c-capture-crm", "pollIntervalMs": 1000,
                    "applyClientIds": [ids["apply-crm"]]},
            "erp": {"enabled": True, "existingSecret": "p2c-capture-erp", "applyClientIds": [ids["apply-erp"]]},
        },
        "apply": {"crm": {"enabled": True, "existingSecret": "p2c-apply-crm"}, "erp": {"enabled": True, "existingSecret": "p2c-apply-erp"}},
        "webhooks": {"port": free_port()},
    }
    documents = render(values)
    log = run_as_rendered(documents, "crm-to-erp", secrets, port, "p2c-crm-to-erp-7d9f8-x2kq4")
    check('"transactional_id":"p2c-crm-to-erp-7d9f8-x2kq4"' in log, "the worker used the pod name as its transactional id")
    for component in ["capture-crm", "apply-crm", "capture-erp", "apply-erp"]:
        run_as_rendered(documents, component, secrets, port, f"p2c-{component}-5c8d7-q8w2e")
finally:
    for process in reversed(processes):
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)

if failures:
    print(f"helm checks: {len(failures)} failed")
    sys.exit(1)
print("helm checks: all passed")

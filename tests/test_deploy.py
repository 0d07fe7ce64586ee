"""The Helm chart (charts/postbay), the kustomize manifests (manifests/) and the Dockerfile,
checked without a cluster: the chart is rendered by the real helm binary, the overlays by the
real kustomize inside kubectl (both installed by scripts/install-test-deps from a PyPI
package), every object is validated against the Kubernetes OpenAPI schemas
(kubernetes-validate, offline), and the rendered settings, arguments and environment are run
by the real postbay binary, whose listeners must answer the way the chart's `helm test` hook
expects.
"""

import base64
import functools
import tarfile
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import urllib.request
import ssl
import subprocess
import time
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from conftest import free_port_base, postbay_binary

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "postbay"
TOOLS = Path("/usr/local/lib/postbay-k8s-tools")
# The oldest Kubernetes the chart claims (Chart.yaml kubeVersion) and a current one.
KUBE_VERSIONS = ("1.25.0", "1.35.0")
# Kinds whose schemas are not Kubernetes' own (cert-manager, prometheus-operator): checked
# for the fields the chart relies on, since their CRDs are not available offline.
FOREIGN_KINDS = {
    ("cert-manager.io/v1", "Certificate"): ("secretName", "issuerRef", "dnsNames"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ("selector", "endpoints"),
}
DB = ["--set", "database.existingSecret=postbay-database"]
# Value sets covering every switch of the chart.
SCENARIOS = {
    "defaults": DB,
    "everything-on": DB + [
        "--set", "admin.enabled=true", "--set", "filter.enabled=true", "--set", "filter.milter.enabled=true",
        "--set-json", 'filter.milter.from=[{"podSelector": {"matchLabels": {"app": "postfix"}}}]',
        "--set", "networkPolicy.enabled=true", "--set", "serviceMonitor.enabled=true",
        "--set", "tls.certManager.enabled=true", "--set", "tls.certManager.issuerRef.name=letsencrypt",
        "--set", "operator.externalDns=true", "--set", "dns.mx={mx1.example.com,mx2.example.com}",
        "--set", "smtp.proxyTrusted={10.0.0.0/8}", "--set", "imap.proxyTrusted={10.0.0.0/8}",
    ],
    "url-and-existing-tls": [
        "--set", "database.url=mysql://postbay:secret-pw@db.example/postbay",
        "--set", "tls.existingSecret=mail-tls", "--set", "persistence.existingClaim=mail",
        "--set", "operator.watchNamespace=mail", "--set", "operator.leaderElection.enabled=false",
        "--set", "auth.scramSecret.existingSecret=scram", "--set", "smtp.service.type=ClusterIP",
        "--set", "config.smtp.max_recipients=50", "--set", "config.imap.allow_plaintext_auth=false",
    ],
    "evaluation-mariadb": ["--set", "mariadb.enabled=true", "--set", "smtp.service.type=NodePort"],
    "single-replica": DB + [
        "--set", "smtp.replicas=1", "--set", "imap.replicas=1", "--set", "operator.replicas=1",
        "--set", "operator.enabled=true", "--set", "auth.scramSecret.generate=false",
    ],
}


def tool(name: str) -> str:
    """helm or kubectl: POSTBAY_HELM / POSTBAY_KUBECTL, else the pinned copies
    scripts/install-test-deps puts in /usr/local/lib/postbay-k8s-tools. Missing is a failure."""
    explicit = os.environ.get(f"POSTBAY_{name.upper()}")
    for candidate in (explicit, str(TOOLS / name)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"{name} is not installed in {TOOLS} (scripts/install-test-deps installs it)")


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


def load_docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


@functools.lru_cache(maxsize=None)
def render(*args: str) -> tuple:
    out = run([tool("helm"), "template", "postbay", str(CHART), "--namespace", "postbay", *args])
    assert out.returncode == 0, out.stderr
    return tuple(load_docs(out.stdout))


def helm_fails(*args: str) -> str:
    out = run([tool("helm"), "template", "postbay", str(CHART), "--namespace", "postbay", *args])
    assert out.returncode != 0, f"helm accepted {args}"
    return out.stderr


@functools.lru_cache(maxsize=None)
def kustomize(overlay: str) -> tuple:
    out = run([tool("kubectl"), "kustomize", str(ROOT / "manifests" / overlay)])
    assert out.returncode == 0, out.stderr
    return tuple(load_docs(out.stdout))


def find(docs, kind: str, name: str) -> dict:
    hits = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} found"
    return hits[0]


def pod_specs(docs):
    """(owner name, pod spec) of every workload and bare Pod."""
    for d in docs:
        if d["kind"] in ("StatefulSet", "Deployment"):
            yield d["metadata"]["name"], d["spec"]["template"]["spec"]
        elif d["kind"] == "Pod":
            yield d["metadata"]["name"], d["spec"]


def pod_specs_labels(docs):
    """(owner name, pod labels) of every workload and bare Pod."""
    for d in docs:
        if d["kind"] in ("StatefulSet", "Deployment"):
            yield d["metadata"]["name"], d["spec"]["template"]["metadata"]["labels"]
        elif d["kind"] == "Pod":
            yield d["metadata"]["name"], d["metadata"]["labels"]


_validated: set[str] = set()


def validate(docs) -> int:
    """Every object against the Kubernetes OpenAPI schemas (strict: unknown fields are
    errors) of each version in KUBE_VERSIONS; returns how many distinct objects were checked."""
    checked = 0
    for doc in docs:
        key = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
        if key in _validated:
            continue
        foreign = FOREIGN_KINDS.get((doc["apiVersion"], doc["kind"]))
        if foreign:
            missing = [f for f in foreign if f not in doc.get("spec", {})]
            assert not missing, f"{doc['kind']}/{doc['metadata']['name']} lacks {missing}"
        else:
            for version in KUBE_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid for {version}: {e.message} at {list(e.path)}")
        _validated.add(key)
        checked += 1
    return checked


# ---------------------------------------------------------------- the chart, rendered by helm


def test_chart_crds_are_the_repository_crds():
    assert (CHART / "crds" / "postbay.dev.yaml").read_bytes() == (ROOT / "crds" / "postbay.dev.yaml").read_bytes(), \
        "charts/postbay/crds/postbay.dev.yaml differs from crds/postbay.dev.yaml: cp crds/postbay.dev.yaml charts/postbay/crds/"


def test_helm_lint_passes():
    out = run([tool("helm"), "lint", "--strict", str(CHART), *DB])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


def test_chart_packages_with_its_crds(tmp_path):
    out = run([tool("helm"), "package", str(CHART), "--destination", str(tmp_path)])
    assert out.returncode == 0, out.stderr
    with tarfile.open(tmp_path / "postbay-0.1.0.tgz") as tar:
        names = tar.getnames()
    assert "postbay/crds/postbay.dev.yaml" in names and "postbay/values.schema.json" in names


def notes(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    out = run([tool("helm"), "install", "postbay", str(CHART), "-n", "postbay", "--dry-run=client", *args], env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.split("NOTES:", 1)[1]


def test_notes_say_what_to_do_next():
    default = notes(*DB)
    assert "kubectl get maildomains -A -o yaml" in default
    assert "helm test postbay -n postbay" in default
    assert "SELF-SIGNED" in default and "EVALUATION ONLY" not in default
    with_tls = notes(*DB, "--set", "tls.existingSecret=mail-tls")
    assert "SELF-SIGNED" not in with_tls
    assert "EVALUATION ONLY" in notes("--set", "mariadb.enabled=true")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_rendered_object_is_valid_kubernetes(scenario):
    docs = render(*SCENARIOS[scenario])
    validate(docs)
    # The CRDs (from the chart's crds/ folder) are valid CustomResourceDefinitions too.
    crds = render("--include-crds", *SCENARIOS[scenario])
    assert {d["metadata"]["name"] for d in crds if d["kind"] == "CustomResourceDefinition"} == {
        "maildomains.postbay.dev", "mailboxes.postbay.dev", "mailaliases.postbay.dev", "dkimkeys.postbay.dev"}
    validate(crds)
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "two objects share a kind and name"


def test_examples_are_valid_against_the_crds():
    """examples/ (what NOTES.txt and e2e apply) against each CRD's openAPIV3Schema."""
    schemas = {}
    for crd in load_docs((ROOT / "crds" / "postbay.dev.yaml").read_text()):
        for version in crd["spec"]["versions"]:
            schemas[(f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])] = \
                version["schema"]["openAPIV3Schema"]
    checked = 0
    for path in sorted((ROOT / "examples").rglob("*.yaml")):
        for doc in load_docs(path.read_text()):
            schema = schemas.get((doc["apiVersion"], doc["kind"]))
            if schema is None:
                kubernetes_validate.validate(doc, KUBE_VERSIONS[-1], strict=True)
                continue
            body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
            jsonschema.validate(body, schema)
            checked += 1
    assert checked >= 4
    bad = {"spec": {"domain": "Not A Domain"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schemas[("postbay.dev/v1alpha1", "MailDomain")])


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_pods_run_restricted(scenario):
    """Restricted Pod Security: non-root as the image's user, seccomp RuntimeDefault, no
    privilege escalation, read-only root filesystem, every capability dropped; resources and
    (outside the test hook) probes everywhere."""
    uid = dockerfile_uid()
    specs = list(pod_specs(render(*SCENARIOS[scenario])))
    assert specs
    for owner, spec in specs:
        pod = spec["securityContext"]
        # The bundled evaluation MariaDB runs as its image's mysql user.
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == (999 if owner.endswith("mariadb") else uid), owner
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, owner
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), owner
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (owner, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (owner, c["name"])
            assert sc["capabilities"] == {"drop": ["ALL"]}, (owner, c["name"])
            assert sc.get("privileged") is not True, (owner, c["name"])
            assert c["resources"]["limits"]["memory"], (owner, c["name"])
            assert c["resources"]["requests"], (owner, c["name"])
            if "test" not in owner:
                assert c["readinessProbe"] and c["livenessProbe"], (owner, c["name"])
                # A writable /tmp, since the root filesystem is not.
                assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"]), (owner, c["name"])
        if "operator" not in owner:
            # Only the operator talks to the API server.
            assert spec["automountServiceAccountToken"] is False, owner


def config_of(docs) -> dict:
    return yaml.safe_load(find(docs, "ConfigMap", "postbay-config")["data"]["postbay.yaml"])


def role_listeners(config: dict) -> dict[str, dict[str, int]]:
    """Container ports each role listens on, read from its settings: {role: {setting: port}}."""
    def port(addr):
        return int(addr.rsplit(":", 1)[1])
    return {
        "smtp": {"smtp.listen": port(config["smtp"]["listen"]),
                 "submission.listen": port(config["submission"]["listen"]),
                 "submission.listen_tls": port(config["submission"]["listen_tls"])},
        "imap": {"lmtp.listen": port(config["lmtp"]["listen"]),
                 "imap.listen": port(config["imap"]["listen"]),
                 "imap.listen_tls": port(config["imap"]["listen_tls"]),
                 "pop3.listen": port(config["pop3"]["listen"]),
                 "pop3.listen_tls": port(config["pop3"]["listen_tls"])},
    }


def service_ports_reaching(docs, component: str) -> dict[int, list[tuple[str, int]]]:
    """{containerPort: [(service, service port)]} for Services selecting a component's pods."""
    workload = next(d for d in docs if d["kind"] in ("StatefulSet", "Deployment")
                    and d["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/component") == component)
    labels = workload["spec"]["template"]["metadata"]["labels"]
    by_name = {p["name"]: p["containerPort"] for c in workload["spec"]["template"]["spec"]["containers"]
               for p in c.get("ports", [])}
    reached: dict[int, list] = {}
    for svc in (d for d in docs if d["kind"] == "Service"):
        selector = svc["spec"].get("selector", {})
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            continue
        for p in svc["spec"]["ports"]:
            target = p.get("targetPort", p["port"])
            container_port = by_name[target] if isinstance(target, str) else target
            reached.setdefault(container_port, []).append((svc["metadata"]["name"], p["port"]))
    return reached


@pytest.mark.parametrize("scenario", ["defaults", "everything-on"])
def test_every_listener_has_a_container_port_and_a_service_port(scenario):
    docs = render(*SCENARIOS[scenario])
    config = config_of(docs)
    for role, listeners in role_listeners(config).items():
        reached = service_ports_reaching(docs, role)
        for setting, port in listeners.items():
            assert port in reached, f"{role} listens on {port} ({setting}) but no Service reaches it"
    # The standard ports, on the Services users and other servers reach.
    assert sorted(p["port"] for p in find(docs, "Service", "postbay-smtp")["spec"]["ports"]) == [25, 465, 587]
    assert sorted(p["port"] for p in find(docs, "Service", "postbay-imap")["spec"]["ports"]) == [110, 143, 993, 995]
    lmtp = find(docs, "Service", "postbay-lmtp")
    assert lmtp["spec"]["type"] == "ClusterIP" and [p["port"] for p in lmtp["spec"]["ports"]] == [24]
    # The queue delivers to that Service.
    assert config["smtp"]["lmtp_target"] == "postbay-lmtp.postbay.svc.cluster.local:24"
    # Each StatefulSet's governing Service exists and is headless.
    for sts in (d for d in docs if d["kind"] == "StatefulSet"):
        assert find(docs, "Service", sts["spec"]["serviceName"])["spec"]["clusterIP"] == "None"


def test_admin_listener_is_on_by_default_and_drives_probes():
    off = render(*SCENARIOS["defaults"], "--set", "admin.enabled=false")
    for owner, spec in pod_specs(off):
        c = spec["containers"][0]
        assert "POSTBAY_ADMIN__LISTEN" not in {e["name"] for e in c.get("env", [])}, owner
        if owner in ("postbay-smtp", "postbay-imap"):
            assert "tcpSocket" in c["readinessProbe"] and "tcpSocket" in c["livenessProbe"], owner
    for owner, spec in pod_specs(render(*SCENARIOS["defaults"])):
        if owner in ("postbay-smtp", "postbay-imap"):
            c = spec["containers"][0]
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}, owner
    on = render(*SCENARIOS["everything-on"])
    for owner in ("postbay-smtp", "postbay-imap", "postbay-filter"):
        spec = dict(pod_specs(on))[owner]
        c = spec["containers"][0]
        env = {e["name"]: e.get("value") for e in c["env"]}
        admin = next(p["containerPort"] for p in c["ports"] if p["name"] == "admin")
        assert env["POSTBAY_ADMIN__LISTEN"] == f"0.0.0.0:{admin}", owner
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}, owner
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}, owner
    # With the filter on, the MX asks it, through its Service, during DATA.
    filter_port = find(on, "Service", "postbay-filter")["spec"]["ports"][0]["port"]
    # filter.milter.enabled: the milter listener, its container port and its Service port.
    filter_pod = dict(pod_specs(on))["postbay-filter"]["containers"][0]
    milter_env = {e["name"]: e.get("value") for e in filter_pod["env"]}["POSTBAY_FILTER__MILTER_LISTEN"]
    milter_port = next(p["containerPort"] for p in filter_pod["ports"] if p["name"] == "milter")
    assert milter_env == f"0.0.0.0:{milter_port}"
    assert {"name": "milter", "port": milter_port, "targetPort": "milter"} in \
        find(on, "Service", "postbay-filter")["spec"]["ports"]
    assert config_of(on)["smtp"]["filter"] == f"http://postbay-filter.postbay.svc.cluster.local:{filter_port}"
    # ... and users' Junk moves teach it, through the same Service, which lets the IMAP pods in.
    assert config_of(on)["imap"]["learn_url"] == config_of(on)["smtp"]["filter"]
    policy = find(on, "NetworkPolicy", "postbay-filter")["spec"]["ingress"][0]["from"]
    assert {p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in policy} == {"smtp", "imap"}
    assert "learn_url" not in config_of(render(*SCENARIOS["defaults"]))["imap"]
    assert "filter" not in config_of(render(*SCENARIOS["defaults"]))["smtp"]
    monitors = [d for d in on if d["kind"] == "ServiceMonitor"]
    assert {m["metadata"]["name"] for m in monitors} == {"postbay-operator", "postbay-mail"}
    scraped = [d["metadata"]["name"] for d in on if d["kind"] == "Service"
               and d["metadata"]["labels"].get("postbay.dev/admin") == "true"]
    assert sorted(scraped) == ["postbay-filter", "postbay-imap-pods", "postbay-smtp-pods"]
    # The filter role is off by default: today's binary has none.
    assert not [d for d in render(*SCENARIOS["defaults"]) if d["metadata"]["name"] == "postbay-filter"]


def test_secrets_only_in_secrets():
    secret_url = "mysql://postbay:secret-pw@db.example/postbay"
    docs = render(*SCENARIOS["url-and-existing-tls"])
    holders = [d for d in docs if "secret-pw" in json.dumps(d)]
    assert [(d["kind"], d["metadata"]["name"]) for d in holders] == [("Secret", "postbay-database")]
    assert find(docs, "Secret", "postbay-database")["stringData"] == {"url": secret_url}
    for owner, spec in pod_specs(docs):
        for c in spec["containers"]:
            for e in c.get("env", []):
                if e["name"] in ("POSTBAY_DATABASE_URL", "POSTBAY_AUTH__SCRAM_UNKNOWN_USER_SECRET"):
                    assert "secretKeyRef" in e["valueFrom"] and "value" not in e, (owner, e)
    # With the bundled MariaDB the URL is put together in the pod from the generated
    # password's Secret (Kubernetes expands $(MARIADB_PASSWORD)); the spec holds no secret.
    evaluation = render(*SCENARIOS["evaluation-mariadb"])
    generated = find(evaluation, "Secret", "postbay-mariadb")["data"]
    assert set(generated) == {"password", "root-password"}
    for owner, spec in pod_specs(evaluation):
        if owner.endswith("mariadb") or "test" in owner:
            continue
        env = spec["containers"][0]["env"]
        names = [e["name"] for e in env]
        url = env[names.index("POSTBAY_DATABASE_URL")]["value"]
        assert url == "mysql://postbay:$(MARIADB_PASSWORD)@postbay-mariadb.postbay.svc.cluster.local:3306/postbay"
        assert names.index("MARIADB_PASSWORD") < names.index("POSTBAY_DATABASE_URL"), owner
        assert env[names.index("MARIADB_PASSWORD")]["valueFrom"]["secretKeyRef"] == {"name": "postbay-mariadb", "key": "password"}
    for value in generated.values():
        assert sum(json.dumps(d).count(value) for d in evaluation) == 1
    # The generated SCRAM secret: a Secret, kept on uninstall, random per install.
    first = find(render(*SCENARIOS["defaults"]), "Secret", "postbay-auth")
    again = find(load_docs(run([tool("helm"), "template", "postbay", str(CHART), "-n", "postbay", *DB]).stdout),
                 "Secret", "postbay-auth")
    assert first["data"]["scram-unknown-user-secret"] != again["data"]["scram-unknown-user-secret"]
    assert first["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_tls_from_a_secret_from_cert_manager_or_self_signed():
    def tls_of(docs):
        spec = dict(pod_specs(docs))["postbay-smtp"]
        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        secret = next((v["secret"]["secretName"] for v in spec["volumes"] if v["name"] == "tls"), None)
        return env.get("POSTBAY_TLS__CERT"), secret
    defaults = render(*SCENARIOS["defaults"])
    # Self-signed: one certificate for every replica, made by the chart.
    assert tls_of(defaults) == ("/etc/postbay/tls", "postbay-tls-self-signed")
    self_signed = find(defaults, "Secret", "postbay-tls-self-signed")
    assert self_signed["type"] == "kubernetes.io/tls"
    cert = base64.b64decode(self_signed["data"]["tls.crt"])
    out = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-checkend", str(365 * 86400)],
                         input=cert, capture_output=True)
    assert out.returncode == 0 and b"DNS:mail.example.com" in out.stdout, out
    key = base64.b64decode(self_signed["data"]["tls.key"])
    pub = [subprocess.run(["openssl", kind, "-noout", "-pubkey"] if kind == "x509" else ["openssl", "pkey", "-pubout"],
                          input=data, capture_output=True, check=True).stdout for kind, data in (("x509", cert), ("pkey", key))]
    assert pub[0] == pub[1], "the self-signed key does not match its certificate"
    assert tls_of(render(*SCENARIOS["url-and-existing-tls"])) == ("/etc/postbay/tls", "mail-tls")
    on = render(*SCENARIOS["everything-on"])
    assert tls_of(on) == ("/etc/postbay/tls", "postbay-tls")
    cert = find(on, "Certificate", "postbay-tls")
    assert cert["spec"]["secretName"] == "postbay-tls"
    assert cert["spec"]["dnsNames"] == ["mail.example.com", "mx1.example.com", "mx2.example.com"]
    assert "needs tls.certManager.issuerRef.name" in helm_fails(*DB, "--set", "tls.certManager.enabled=true")


def test_operator_rbac_and_settings_follow_the_values():
    docs = render(*SCENARIOS["defaults"])
    role = find(docs, "ClusterRole", "postbay-operator")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert {"maildomains", "mailboxes", "mailaliases", "dkimkeys", "maildomains/status",
            "mailboxes/status", "mailaliases/status", "dkimkeys/status", "secrets", "events"} <= resources
    assert "dnsendpoints" not in resources
    assert find(docs, "ClusterRoleBinding", "postbay-operator")["subjects"] == [
        {"kind": "ServiceAccount", "name": "postbay-operator", "namespace": "postbay"}]
    mirror = find(docs, "Role", "postbay-operator-dkim-keys")
    assert mirror["rules"] == [{"apiGroups": [""], "resources": ["secrets"],
                                "resourceNames": ["postbay-dkim-keys"], "verbs": ["create", "patch"]}]
    settings = yaml.safe_load(find(docs, "ConfigMap", "postbay-operator")["data"]["settings.yaml"])
    # The Secret the operator writes is the one the smtp pods mount.
    smtp = dict(pod_specs(docs))["postbay-smtp"]
    dkim = next(v for v in smtp["volumes"] if v["name"] == "dkim")["secret"]
    assert settings["dkimKeys"] == {"namespace": "postbay", "secretName": dkim["secretName"]}
    assert dkim["optional"] is True
    assert settings["mail"]["mx"] == ["mail.example.com"]
    assert settings["leaderElection"]["enabled"] is True
    assert find(docs, "Role", "postbay-operator-leader")
    scoped = render(*SCENARIOS["url-and-existing-tls"])
    assert not [d for d in scoped if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    assert find(scoped, "Role", "postbay-operator")["metadata"]["namespace"] == "mail"
    assert not [d for d in scoped if d["metadata"]["name"] == "postbay-operator-leader"]
    assert yaml.safe_load(find(scoped, "ConfigMap", "postbay-operator")["data"]["settings.yaml"])["watchNamespace"] == "mail"
    on = render(*SCENARIOS["everything-on"])
    assert "dnsendpoints" in {r for rule in find(on, "ClusterRole", "postbay-operator")["rules"] for r in rule["resources"]}


def test_pdbs_and_network_policies():
    docs = render(*SCENARIOS["defaults"])
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"} == {
        "postbay-smtp", "postbay-imap", "postbay-operator"}
    assert not [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert not [d for d in render(*SCENARIOS["single-replica"]) if d["kind"] == "PodDisruptionBudget"]
    on = render(*SCENARIOS["everything-on"])
    def admitted(component: str, port_name: str, client: dict) -> bool:
        """Whether the NetworkPolicies let a pod with labels `client` reach `port_name`
        of the `component` pods (same namespace)."""
        policies = [p for p in on if p["kind"] == "NetworkPolicy"
                    and p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == component]
        assert policies, component
        for policy in policies:
            for rule in policy["spec"]["ingress"]:
                if {"port": port_name} not in rule["ports"]:
                    continue
                if "from" not in rule or any(
                        all(client.get(k) == v for k, v in peer["podSelector"]["matchLabels"].items())
                        for peer in rule["from"]):
                    return True
        return False
    labels = {n: dict(pod_specs_labels(on))[n] for n in ("postbay-smtp", "postbay-imap")}
    hook = find(on, "Pod", "postbay-test-greetings")
    outsider = {"app": "something-else"}
    assert admitted("imap", "lmtp", labels["postbay-smtp"])
    assert not admitted("imap", "lmtp", outsider), "LMTP is for the smtp pods only"
    assert not admitted("imap", "lmtp", labels["postbay-imap"])
    for port in ("imap", "imaps", "pop3", "pop3s"):
        assert admitted("imap", port, outsider)
    for port in ("smtp", "submission", "submissions"):
        assert admitted("smtp", port, outsider)
    assert admitted("filter", "filter", labels["postbay-smtp"]) and not admitted("filter", "filter", outsider)
    # The milter port: only the peers filter.milter.from names (a classic-stack Postfix).
    assert admitted("filter", "milter", {"app": "postfix"})
    assert not admitted("filter", "milter", outsider) and not admitted("filter", "milter", labels["postbay-smtp"])
    # Every port the helm test Pod checks is open to it.
    script = hook["spec"]["containers"][0]["args"][0]
    services = {}
    for component in ("smtp", "imap"):
        workload = find(on, "StatefulSet", f"postbay-{component}")
        names = {p["containerPort"]: p["name"] for p in workload["spec"]["template"]["spec"]["containers"][0]["ports"]}
        for container_port, svcs in service_ports_reaching(on, component).items():
            for name, port in svcs:
                services[(name, port)] = (component, names[container_port])
    for line in script.splitlines():
        if line.strip().startswith("check postbay-"):
            _, host, port, _ = shlex.split(line)
            assert admitted(*services[(host, int(port))], hook["metadata"]["labels"]), line
    # Every port a NetworkPolicy names is a port of the pods it selects.
    for policy in (d for d in on if d["kind"] == "NetworkPolicy"):
        component = policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        spec = next(s for owner, s in pod_specs(on) if owner == f"postbay-{component}")
        names = {p["name"] for c in spec["containers"] for p in c["ports"]}
        for rule in policy["spec"]["ingress"]:
            for p in rule["ports"]:
                assert p["port"] in names, (policy["metadata"]["name"], p)


# ---------------------------------------------------------------- values.schema.json


def test_values_yaml_satisfies_the_schema():
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(values, schema)
    # Every key of values.yaml is described by the schema, and every top-level key in the
    # README's table.
    def keys(d, prefix=""):
        for k, v in d.items():
            yield prefix + k
            if isinstance(v, dict) and v and k not in ("config", "resources", "requests", "limits",
                                                        "podSecurityContext", "securityContext"):
                yield from keys(v, prefix + k + ".")
    readme = (CHART / "README.md").read_text()
    missing = [k for k in keys(values) if f"`{k}`" not in readme]
    assert not missing, f"chart README does not describe {missing}"


@pytest.mark.parametrize("bad, message", [
    (["--set", "smtp.replicsa=3"], "additional properties 'replicsa' not allowed"),
    (["--set", "tlss.existingSecret=x"], "additional properties 'tlss' not allowed"),
    (["--set", "smtp.replicas=-1"], "minimum"),
    (["--set", "smtp.replicas=two"], "got string, want integer"),
    (["--set", "imap.service.type=Ingress"], "value must be one of"),
    (["--set", "database.url=postgres://x@y/z"], "does not match pattern"),
    (["--set", "hostname=Not A Host"], "does not match pattern"),
    (["--set", "smtp.proxyTrusted={10.0.0.0}"], "does not match pattern"),
    (["--set", "admin.port=70000"], "maximum"),
    (["--set-json", 'extraEnv=[{"value":"x"}]'], "missing property 'name'"),
])
def test_schema_rejects_bad_values(bad, message):
    err = helm_fails(*DB, *bad)
    assert "values don't meet the specifications of the schema" in err, err
    assert message in err, err


def test_a_database_is_required():
    err = helm_fails()
    assert "set database.existingSecret" in err


# ---------------------------------------------------------------- the real binary, as configured


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_ready(proc: subprocess.Popen, log: Path, marker: str) -> None:
    """Until the role prints `marker` (after every listener is bound); the bound is only
    there so a hung start fails instead of hanging the suite."""
    deadline = time.monotonic() + 180
    while marker not in log.read_text():
        assert proc.poll() is None, f"exited with {proc.returncode}: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"never printed {marker!r}: {log.read_text()[-2000:]}"
        time.sleep(0.1)


def greeting(port: int, tls: bool) -> str:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    with sock:
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock)
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(512)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace").splitlines()[0] if data else ""


def start_role(docs, owner: str, work: Path, port_map: dict[int, int], database_url: str) -> subprocess.Popen:
    """Runs the container of `owner` as the kubelet would: its args, its environment (Secrets
    and the Downward API filled in), its volumes as directories under `work`, the rendered
    ConfigMap as the settings file; only 0.0.0.0:<containerPort> becomes 127.0.0.1:<free port>
    and the LMTP Service name becomes the local LMTP listener."""
    spec = dict(pod_specs(docs))[owner]
    container = spec["containers"][0]
    mounts = {}
    for m in container["volumeMounts"]:
        local = work / owner / m["name"]
        local.mkdir(parents=True, exist_ok=True)
        mounts[m["mountPath"]] = local
    volumes = {v["name"]: v for v in spec["volumes"]}
    for m in container["volumeMounts"]:
        local = mounts[m["mountPath"]]
        volume = volumes[m["name"]]
        if "configMap" in volume:
            cm = find(docs, "ConfigMap", volume["configMap"]["name"])
            for key, text in cm["data"].items():
                text = re.sub(r"0\.0\.0\.0:(\d+)", lambda g: f"127.0.0.1:{port_map[int(g[1])]}", text)
                text = text.replace("postbay-lmtp.postbay.svc.cluster.local:24", f"127.0.0.1:{port_map[2424]}")
                (local / key).write_text(text)
        elif m["name"] == "tls":
            # The evaluation overlay's certificate (ECDSA P-256), as a mounted tls Secret.
            for name in ("tls.crt", "tls.key"):
                shutil.copyfile(ROOT / "manifests/overlays/evaluation" / name, local / name)
        elif m["name"] == "mail":
            mounts[m["mountPath"]] = work / "shared-volume"
            (work / "shared-volume").mkdir(exist_ok=True)

    def local_path(value: str) -> str:
        for mount, local in mounts.items():
            if value == mount or value.startswith(mount + "/"):
                return str(local) + value[len(mount):]
        return value

    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTBAY_")}
    for e in container["env"]:
        if "value" in e:
            value = local_path(e["value"])
            # A listener set by variable (the admin port): loopback, a free port per role.
            value = re.sub(r"^0\.0\.0\.0:(\d+)$", lambda g: f"127.0.0.1:{free_ports(1)[0]}", value)
            env[e["name"]] = value
        elif "fieldRef" in e["valueFrom"]:
            env[e["name"]] = f"{owner}-0"
        elif e["valueFrom"]["secretKeyRef"]["key"] == "url":
            env[e["name"]] = database_url
        else:
            env[e["name"]] = "the-same-secret-on-every-replica"
    args = [local_path(a) for a in container["args"]]
    with open(work / f"{owner}.log", "w") as log:
        proc = subprocess.Popen([str(postbay_binary()), *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.env_used = env
    return proc


def test_rendered_roles_run_and_answer_as_helm_test_expects(tmp_path):
    """The chart's settings, args and environment start the real `postbay smtp` and
    `postbay imap` (here on SQLite in a shared directory), and every Service port answers
    with the greeting its protocol sends: the plain ones exactly as the `helm test` hook
    checks them, the implicit-TLS ones after a TLS handshake with the mounted certificate."""
    docs = render(*SCENARIOS["url-and-existing-tls"])
    config = config_of(docs)
    # `config` values are merged into the settings the binary reads.
    assert config["smtp"]["max_recipients"] == 50 and config["smtp"]["listen"] == "0.0.0.0:2525"
    container_ports = sorted({p for ports in role_listeners(config).values() for p in ports.values()})
    port_map = dict(zip(container_ports, free_ports(len(container_ports))))
    database_url = f"sqlite://{tmp_path}/shared-volume/postbay.db?mode=rwc"
    (tmp_path / "shared-volume").mkdir()
    procs = [start_role(docs, "postbay-imap", tmp_path, port_map, database_url)]
    try:
        wait_ready(procs[0], tmp_path / "postbay-imap.log", "postbay imap ready")
        procs.append(start_role(docs, "postbay-smtp", tmp_path, port_map, database_url))
        wait_ready(procs[1], tmp_path / "postbay-smtp.log", "postbay smtp ready")
        # The probes the chart sets answer on the admin listener of each role.
        for proc in procs:
            admin = next(v for k, v in proc.env_used.items() if k == "POSTBAY_ADMIN__LISTEN")
            for path in ("/healthz", "/readyz"):
                with urllib.request.urlopen(f"http://{admin}{path}", timeout=30) as r:
                    assert r.status == 200, (admin, path)
        hook = find(render(*SCENARIOS["defaults"]), "Pod", "postbay-test-greetings")
        script = hook["spec"]["containers"][0]["args"][0]
        checks = [shlex.split(line)[1:] for line in script.splitlines() if line.strip().startswith("check postbay-")]
        assert len(checks) == 5
        services = {}
        for component in ("smtp", "imap"):
            for container_port, svcs in service_ports_reaching(docs, component).items():
                for name, port in svcs:
                    services[(name, port)] = container_port
        for host, port, prefix in checks:
            line = greeting(port_map[services[(host, int(port))]], tls=False)
            assert line.startswith(prefix), f"{host}:{port} answered {line!r}, the helm test expects {prefix!r}"
        # And the hook's own script, under busybox as in its image, with each Service
        # address replaced by the local port its targetPort maps to.
        busybox = shutil.which("busybox")
        if busybox is None:
            pytest.fail("busybox is not installed (scripts/install-test-deps installs it)")
        bin_dir = tmp_path / "busybox-bin"
        bin_dir.mkdir()
        for applet in ("sh", "nc", "head", "printf", "echo"):
            (bin_dir / applet).symlink_to(busybox)
        local = re.sub(r"check (postbay-\S+) (\d+) ",
                       lambda m: f"check 127.0.0.1 {port_map[services[(m[1], int(m[2]))]]} ", script)
        hook_run = run([str(bin_dir / "sh"), "-c", local], env={"PATH": str(bin_dir)})
        assert hook_run.returncode == 0, hook_run.stdout + hook_run.stderr
        assert hook_run.stdout.count("ok 127.0.0.1:") == 5, hook_run.stdout
        for host, port, prefix in [("postbay-smtp", 465, "220 "), ("postbay-imap", 993, "* OK"),
                                   ("postbay-imap", 995, "+OK")]:
            line = greeting(port_map[services[(host, port)]], tls=True)
            assert line.startswith(prefix), f"{host}:{port} (TLS) answered {line!r}"
        for p in procs:
            assert p.poll() is None, (tmp_path / "postbay-smtp.log").read_text()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill()


def test_a_setting_the_binary_does_not_know_stops_the_role(tmp_path):
    """`config` is passed through unchecked by the chart; the binary refuses unknown keys
    at start, so a typo fails the rollout instead of being ignored."""
    docs = render(*DB, "--set", "config.smtp.max_recipeints=50")
    (tmp_path / "shared-volume").mkdir()
    ports = [2525, 2587, 2465, 2424, 1143, 1993, 1110, 1995]
    proc = start_role(docs, "postbay-smtp", tmp_path, dict(zip(ports, free_ports(len(ports)))),
                      f"sqlite://{tmp_path}/shared-volume/postbay.db?mode=rwc")
    try:
        assert proc.wait(timeout=60) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "postbay-smtp.log").read_text()
    assert "unknown field `max_recipeints`" in log, log


# ---------------------------------------------------------------- Dockerfile


def dockerfile_uid() -> int:
    text = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users, "the Dockerfile sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "USER must be numeric, so runAsNonRoot can check it"
    return int(uid)


def test_dockerfile_and_chart_agree():
    text = (ROOT / "Dockerfile").read_text()
    assert "--locked" in text
    assert dockerfile_uid() == yaml.safe_load((CHART / "values.yaml").read_text())["podSecurityContext"]["runAsUser"]
    assert dockerfile_uid() != 0
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "target" in ignored or "target/" in ignored or "/target" in ignored


# ---------------------------------------------------------------- kustomize (manifests/)


GENERATED = ("base", "operator", "mail")


def test_manifests_are_the_rendered_chart(tmp_path):
    out = run([str(ROOT / "scripts" / "render-manifests"), "--out", str(tmp_path)])
    assert out.returncode == 0, out.stderr
    for folder in GENERATED:
        committed = sorted(p.name for p in (ROOT / "manifests" / folder).iterdir())
        fresh = sorted(p.name for p in (tmp_path / folder).iterdir())
        assert committed == fresh, f"manifests/{folder}: run scripts/render-manifests"
    names = [f"{folder}/{p.name}" for folder in GENERATED for p in (tmp_path / folder).iterdir()]
    for name in names + ["overlays/evaluation/mariadb.yaml"]:
        assert (tmp_path / name).read_text() == (ROOT / "manifests" / name).read_text(), \
            f"manifests/{name} is stale: run scripts/render-manifests"


@pytest.mark.parametrize("overlay", ["base", "operator", "mail", "overlays/production", "overlays/evaluation"])
def test_kustomize_output_is_valid_kubernetes(overlay):
    docs = kustomize(overlay)
    validate(docs)
    # Nothing Helm-only is left for kubectl, and every namespaced object is in postbay.
    for d in docs:
        labels = d["metadata"].get("labels", {})
        assert "helm.sh/chart" not in labels and labels.get("app.kubernetes.io/managed-by") != "Helm", d["metadata"]["name"]
        if d["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"]["namespace"] == "postbay", (d["kind"], d["metadata"]["name"])
    # Every Secret and ConfigMap a pod names exists in the output or is one the README
    # tells the administrator to create.
    to_create = {"postbay-database", "postbay-tls", "postbay-auth", "postbay-dkim-keys"}
    present = {d["metadata"]["name"] for d in docs if d["kind"] in ("Secret", "ConfigMap")}
    for owner, spec in pod_specs(docs):
        refs = [v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v]
        refs += [v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v]
        refs += [e["valueFrom"]["secretKeyRef"]["name"] for c in spec["containers"] for e in c.get("env", [])
                 if "secretKeyRef" in e.get("valueFrom", {})]
        for ref in refs:
            assert ref in present or ref in to_create, (overlay, owner, ref)


def test_base_equals_the_chart_with_the_base_values():
    """What kubectl apply -k installs is what helm install would, less Helm's labels."""
    def key(d):
        return d["kind"], d["metadata"]["name"]
    chart = {key(d): d for d in render("--include-crds", "--no-hooks", "-f", str(ROOT / "manifests" / "chart-values.yaml"))}
    base = {key(d): d for d in kustomize("base")}
    assert set(base) == set(chart) | {("Namespace", "postbay")}
    for k, d in base.items():
        if k in chart:
            for field in ("spec", "data", "rules", "roleRef", "subjects"):
                assert d.get(field) == chart[k].get(field), (k, field)
    assert not [d for d in base.values() if d["kind"] == "Secret"], "the base must not carry secrets"


def test_production_overlay():
    docs = kustomize("overlays/production")
    assert find(docs, "StatefulSet", "postbay-smtp")["spec"]["replicas"] == 3
    assert find(docs, "StatefulSet", "postbay-imap")["spec"]["replicas"] == 3
    pvc = find(docs, "PersistentVolumeClaim", "postbay-mail")["spec"]
    assert pvc["accessModes"] == ["ReadWriteMany"] and pvc["resources"]["requests"]["storage"] == "500Gi"
    assert not [d for d in docs if d["kind"] == "Secret"]
    for owner in ("postbay-smtp", "postbay-imap", "postbay-operator"):
        spec = dict(pod_specs(docs))[owner]
        url = next(e for e in spec["containers"][0]["env"] if e["name"] == "POSTBAY_DATABASE_URL")
        assert url["valueFrom"]["secretKeyRef"] == {"name": "postbay-database", "key": "url"}, owner
    smtp = dict(pod_specs(docs))["postbay-smtp"]
    assert {"name": "tls", "secret": {"secretName": "postbay-tls"}} in smtp["volumes"]
    assert smtp["containers"][0]["resources"]["requests"]["cpu"] == "500m"
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"} == {
        "postbay-smtp", "postbay-imap", "postbay-operator"}


def test_evaluation_overlay():
    docs = kustomize("overlays/evaluation")
    tls = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].startswith("postbay-tls-"))
    assert tls["type"] == "kubernetes.io/tls"
    for owner in ("postbay-smtp", "postbay-imap"):
        spec = dict(pod_specs(docs))[owner]
        assert {"name": "tls", "secret": {"secretName": tls["metadata"]["name"]}} in spec["volumes"], owner
    out = subprocess.run(["openssl", "x509", "-noout", "-checkend", str(365 * 86400)],
                         input=base64.b64decode(tls["data"]["tls.crt"]), capture_output=True)
    assert out.returncode == 0, "the evaluation certificate expires within a year: make a new one"
    for d in docs:
        if d["kind"] in ("StatefulSet", "Deployment"):
            assert d["spec"]["replicas"] == 1, d["metadata"]["name"]
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    for name in ("postbay-smtp", "postbay-imap"):
        svc = find(docs, "Service", name)["spec"]
        assert svc["type"] == "ClusterIP" and "externalTrafficPolicy" not in svc
    secrets = {d["metadata"]["name"].rsplit("-", 1)[0]: d for d in docs if d["kind"] == "Secret"}
    url = base64.b64decode(secrets["postbay-database"]["data"]["url"]).decode()
    password = base64.b64decode(secrets["postbay-mariadb"]["data"]["password"]).decode()
    assert url == f"mysql://postbay:{password}@postbay-mariadb.postbay.svc.cluster.local:3306/postbay"
    mariadb = find(docs, "StatefulSet", "postbay-mariadb")
    env = {e["name"]: e for e in mariadb["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MARIADB_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == secrets["postbay-mariadb"]["metadata"]["name"]
    smtp = dict(pod_specs(docs))["postbay-smtp"]
    db = next(e for e in smtp["containers"][0]["env"] if e["name"] == "POSTBAY_DATABASE_URL")
    assert db["valueFrom"]["secretKeyRef"]["name"] == secrets["postbay-database"]["metadata"]["name"]
    assert find(docs, "PersistentVolumeClaim", "postbay-mail")["spec"]["accessModes"] == ["ReadWriteOnce"]


# ---------------------------------------------------------------- the image


def buildah(*args: str, check: bool = True) -> str:
    path = shutil.which("buildah")
    if path is None:
        pytest.fail("buildah is not installed (scripts/install-test-deps installs it)")
    env = {**os.environ, "STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}
    out = subprocess.run([path, *args], capture_output=True, text=True, timeout=300, env=env)
    if check:
        assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_image_from_the_built_binary_runs_as_nonroot(tmp_path):
    """scripts/build-image --from-binary (the offline path: base images cannot be pulled
    here) makes an image whose user is the chart's, and `postbay dev` runs in it as that
    user, writing only its data directory, and answers SMTP and IMAP."""
    tag = f"localhost/postbay:test-{os.getpid()}"
    out = run([str(ROOT / "scripts" / "build-image"), "--from-binary", str(postbay_binary()), tag])
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"build-image: {tag} built, size" in out.stdout
    container = None
    proc = None
    try:
        config = json.loads(buildah("inspect", "--type", "image", tag))["OCIv1"]["config"]
        assert config["User"] == f"{dockerfile_uid()}:{dockerfile_uid()}"
        assert config["Entrypoint"] == ["/usr/local/bin/postbay"]
        container = buildah("from", tag)
        base = free_port_base()
        env = {**os.environ, "STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}
        with open(tmp_path / "image.log", "w") as log:
            proc = subprocess.Popen([shutil.which("buildah"), "run", "--isolation", "chroot", container, "--",
                                     "/usr/local/bin/postbay", "dev", "--data", "/var/lib/postbay",
                                     "--port-base", str(base)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        wait_ready(proc, tmp_path / "image.log", "postbay dev ready")
        assert greeting(base + 25, tls=False).startswith("220 "), (tmp_path / "image.log").read_text()
        assert greeting(base + 143, tls=False).startswith("* OK")
        assert greeting(base + 993, tls=True).startswith("* OK")
        root = Path(buildah("mount", container))
        assert (root / "var/lib/postbay/postbay.db").stat().st_uid == dockerfile_uid()
        # Nothing outside the data directory and /tmp is owned by the process's user.
        written = [p for p in root.rglob("*") if p.stat().st_uid == dockerfile_uid()
                   and not str(p).startswith((str(root / "var/lib/postbay"), str(root / "tmp")))]
        assert not written, written
    finally:
        if proc is not None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
        if container:
            buildah("rm", container, check=False)
        buildah("rmi", tag, check=False)



def test_names_follow_the_release_and_namespace():
    """Another release name and namespace: every cross-reference still meets its object."""
    out = run([tool("helm"), "template", "mail", str(CHART), "--namespace", "corp", *DB])
    assert out.returncode == 0, out.stderr
    docs = load_docs(out.stdout)
    assert all(d["metadata"].get("namespace") in ("corp", None) for d in docs)
    config = yaml.safe_load(find(docs, "ConfigMap", "mail-postbay-config")["data"]["postbay.yaml"])
    host, port = config["smtp"]["lmtp_target"].rsplit(":", 1)
    name, namespace = host.split(".")[:2]
    assert namespace == "corp" and int(port) in [p["port"] for p in find(docs, "Service", name)["spec"]["ports"]]
    settings = yaml.safe_load(find(docs, "ConfigMap", "mail-postbay-operator")["data"]["settings.yaml"])
    smtp = dict(pod_specs(docs))["mail-postbay-smtp"]
    mirror = next(v for v in smtp["volumes"] if v["name"] == "dkim")["secret"]["secretName"]
    assert settings["dkimKeys"] == {"namespace": "corp", "secretName": mirror}
    assert find(docs, "Role", "mail-postbay-operator-dkim-keys")["rules"][0]["resourceNames"] == [mirror]
    assert settings["leaderElection"]["namespace"] == "corp"
    operator = dict(pod_specs(docs))["mail-postbay-operator"]
    assert operator["serviceAccountName"] == "mail-postbay-operator"
    assert find(docs, "ClusterRoleBinding", "mail-postbay-operator")["subjects"][0] == {
        "kind": "ServiceAccount", "name": "mail-postbay-operator", "namespace": "corp"}
    for sts in (d for d in docs if d["kind"] == "StatefulSet"):
        claim = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "mail")
        assert find(docs, "PersistentVolumeClaim", claim["persistentVolumeClaim"]["claimName"])


def test_a_relayhost_with_a_login_mounts_its_secrets_and_configures_the_binary():
    docs = render(*DB, "--set", "smtp.relayhost.host=[smtp.example.net]:587",
                  "--set", "smtp.relayhost.user=out@example.net",
                  "--set", "smtp.relayhost.passwordSecret.name=relay-login",
                  "--set", "smtp.relayhost.caSecret.name=relay-ca")
    outbound = config_of(docs)["outbound"]
    assert outbound == {"relayhost": "[smtp.example.net]:587", "relayhost_user": "out@example.net",
                        "relayhost_password_file": "/etc/postbay/relay/password",
                        "relayhost_ca_file": "/etc/postbay/relay-ca/ca.crt"}
    pod = find(docs, "StatefulSet", "postbay-smtp")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["relay"]["secret"]["secretName"] == "relay-login"
    assert volumes["relay-ca"]["secret"]["secretName"] == "relay-ca"
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["relay"] == "/etc/postbay/relay" and mounts["relay-ca"] == "/etc/postbay/relay-ca"
    # Without a relayhost nothing of it is rendered.
    plain = find(render(*DB), "StatefulSet", "postbay-smtp")["spec"]["template"]["spec"]
    assert not {"relay", "relay-ca"} & {v["name"] for v in plain["volumes"]}
    assert "outbound" not in config_of(render(*DB))
    # A login without the Secret that holds its password is refused.
    assert "passwordSecret.name is needed" in helm_fails(*DB, "--set", "smtp.relayhost.host=[a]:587",
                                                         "--set", "smtp.relayhost.user=u")
    assert "does not match pattern" in helm_fails(*DB, "--set", "smtp.relayhost.host=a b:x")


def test_srs_mounts_its_secret_and_merges_with_the_relayhost_settings(tmp_path):
    docs = render(*DB, "--set", "smtp.srs.secretName=postbay-srs", "--set", "smtp.srs.domain=fwd.example.net",
                  "--set", "smtp.relayhost.host=[smtp.example.net]:587")
    config = config_of(docs)
    assert config["outbound"] == {"relayhost": "[smtp.example.net]:587",
                                  "srs_secret_file": "/etc/postbay/srs/secret",
                                  "srs_domain": "fwd.example.net"}
    pod = find(docs, "StatefulSet", "postbay-smtp")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["srs"]["secret"] == {"secretName": "postbay-srs", "defaultMode": 288}
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["srs"] == "/etc/postbay/srs"
    # The binary takes the rendered settings (unknown keys would be refused).
    settings = tmp_path / "postbay.yaml"
    settings.write_text(yaml.safe_dump({**config, "data_dir": str(tmp_path / "data")}))
    out = subprocess.run([str(postbay_binary()), "--config", str(settings), "tls-report"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "no TLS policy sessions recorded" in out.stderr
    # Off by default: no volume, no setting.
    plain = find(render(*DB), "StatefulSet", "postbay-smtp")["spec"]["template"]["spec"]
    assert "srs" not in {v["name"] for v in plain["volumes"]}
    assert "schema" in helm_fails(*DB, "--set", "smtp.srs.bogus=1").lower()

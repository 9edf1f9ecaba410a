#!/usr/bin/env bash
# Offline checks of the Helm chart in helm/henvis, for CI (`make test`) and for anyone
# changing the chart. Prints every check it makes and exits non-zero on any problem.
#
#   tools/helm-check.sh
#
# Tools come only from package registries this machine reaches, cached between runs:
#   - helm: `go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION` (Go module proxy) into
#     $(go env GOPATH)/bin; skipped when that helm is already installed.
#   - promtool: from Debian's `prometheus` package (`apt-get download`, unpacked with
#     dpkg-deb, nothing installed or started) into $HENVIS_TOOLS_CACHE/promtool-debian;
#     skipped when that binary exists. Building it with `go install` from the Prometheus Go
#     module works too but costs ~4 CPU-minutes cold, against ~1 s for the 19 MB package.
#   - checkov (PyPI, $CHECKOV_VERSION) in its own venv under $HENVIS_TOOLS_CACHE: its many
#     dependencies would otherwise move pins of the project's lock (see the operators' guide).
#   - Kubernetes JSON schemas: the PyPI package kubernetes-validate, which bundles the
#     strict (additionalProperties: false) schemas of every Kubernetes minor release,
#     installed into a venv under $HENVIS_TOOLS_CACHE. We validate with it directly; see
#     docs/operators-guide.md ("How the chart is checked") for why not kubeconform.
#
# Environment:
#   HELM_VERSION               helm release to install (default below)
#   KUBERNETES_VALIDATE_VERSION  kubernetes-validate release (default below)
#   CHECKOV_VERSION            checkov release (default below)
#   HELM_CHECK_KUBE_VERSIONS   Kubernetes versions to validate against (oldest supported
#                              by Chart.yaml and newest bundled; space-separated)
#   HENVIS_TOOLS_CACHE         cache folder for the validator venv (~/.cache/henvis-tools)
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
KUBE_VERSIONS="${HELM_CHECK_KUBE_VERSIONS:-1.27.0 1.37.0}"
# The version helm renders and lints for: a go-installed helm has no release metadata and
# would otherwise assume Kubernetes 1.20, older than Chart.yaml's kubeVersion allows.
RENDER_KUBE_VERSION="${KUBE_VERSIONS##* }"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$ROOT/helm/henvis"
PRODUCTION_VALUES="$ROOT/helm/ci-values-production.yaml"
CACHE="${HENVIS_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/henvis-tools}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "  ok    $*"; }
fail() { failed=$((failed + 1)); echo "  FAIL  $*"; }
section() { echo; echo "== $*"; }

# --- tools ---------------------------------------------------------------------------
section "tools"
command -v go >/dev/null || { echo "helm-check: Go is needed to install helm (go install); install Go 1.22+" >&2; exit 2; }
GOBIN_DIR="$(go env GOBIN)"
GOBIN_DIR="${GOBIN_DIR:-$(go env GOPATH)/bin}"
HELM="$GOBIN_DIR/helm"
installed_helm_version=""
if [ -x "$HELM" ]; then
    installed_helm_version="$("$HELM" version --template '{{ .Version }}' 2>/dev/null || true)"
fi
# A go-installed helm reports its version as vMAJOR.MINOR (no release metadata).
if [ -n "$installed_helm_version" ] && [[ "$HELM_VERSION" == "$installed_helm_version"* ]]; then
    echo "  helm $installed_helm_version already installed at $HELM"
else
    echo "  installing helm $HELM_VERSION with go install (first time: a minute or two) ..."
    start=$SECONDS
    go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    echo "  helm installed in $((SECONDS - start)) s"
fi

PROMTOOL_DIR="$CACHE/promtool-debian"
PROMTOOL="$PROMTOOL_DIR/promtool"
if [ -x "$PROMTOOL" ]; then
    echo "  promtool already unpacked at $PROMTOOL ($("$PROMTOOL" --version 2>&1 | head -n 1))"
else
    echo "  unpacking promtool from Debian's prometheus package ..."
    SUDO=()
    [ "$(id -u)" -eq 0 ] || SUDO=(sudo -n)
    deb_dir="$(mktemp -d)"
    # apt-get download needs the package lists; a fresh machine may not have them yet.
    (cd "$deb_dir" && apt-get download prometheus >/dev/null 2>&1) \
        || { "${SUDO[@]}" apt-get update -qq && (cd "$deb_dir" && apt-get download prometheus >/dev/null); }
    dpkg-deb -x "$deb_dir"/prometheus_*.deb "$deb_dir/root"
    mkdir -p "$PROMTOOL_DIR"
    install -m 0755 "$deb_dir/root/usr/bin/promtool" "$PROMTOOL"
    rm -rf -- "$deb_dir"
    echo "  promtool: $("$PROMTOOL" --version 2>&1 | head -n 1)"
fi

VENV="$CACHE/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
if ! "$VENV/bin/python" -c "import kubernetes_validate" 2>/dev/null; then
    echo "  installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $VENV ..."
    PYTHON="$(command -v python3.11 || command -v python3)"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
else
    echo "  kubernetes-validate $KUBERNETES_VALIDATE_VERSION already installed in $VENV"
fi

CHECKOV_VENV="$CACHE/checkov-$CHECKOV_VERSION"
if ! "$CHECKOV_VENV/bin/checkov" --version >/dev/null 2>&1; then
    echo "  installing checkov $CHECKOV_VERSION into $CHECKOV_VENV ..."
    PYTHON="$(command -v python3.11 || command -v python3)"
    "$PYTHON" -m venv "$CHECKOV_VENV"
    "$CHECKOV_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
else
    echo "  checkov $CHECKOV_VERSION already installed in $CHECKOV_VENV"
fi

# --- the registry copy ---------------------------------------------------------------
section "copies in the chart: centre registry, Grafana dashboard"
if cmp -s "$CHART/files/centres.v1.yaml" "$ROOT/henvis/data/centres.v1.yaml"; then
    pass "helm/henvis/files/centres.v1.yaml is identical to henvis/data/centres.v1.yaml"
else
    fail "helm/henvis/files/centres.v1.yaml differs from henvis/data/centres.v1.yaml: copy it (cp henvis/data/centres.v1.yaml helm/henvis/files/)"
fi

if cmp -s "$CHART/files/grafana-dashboard.json" "$ROOT/docs/grafana-dashboard.json"; then
    pass "helm/henvis/files/grafana-dashboard.json is identical to docs/grafana-dashboard.json"
else
    fail "helm/henvis/files/grafana-dashboard.json differs from docs/grafana-dashboard.json: copy it (cp docs/grafana-dashboard.json helm/henvis/files/)"
fi

# --- values.yaml documents every value ----------------------------------------------
section "values.yaml comments"
undocumented="$(awk '
    /^[[:space:]]*#/ { commented = 1; next }
    /^[[:space:]]*$/ { next }
    /^[[:space:]]*-/ { commented = 0; next }
    /^[[:space:]]*[A-Za-z_][A-Za-z0-9_]*:/ { if (!commented) print "line " NR ": " $0; commented = 0; next }
    { commented = 0 }' "$CHART/values.yaml")"
if [ -z "$undocumented" ]; then
    pass "every key in values.yaml has a comment above it"
else
    fail "keys in values.yaml without a comment:"; echo "$undocumented" | sed 's/^/          /'
fi

# --- lint and render -----------------------------------------------------------------
declare -A VALUE_SETS=([default]="" [production]="$PRODUCTION_VALUES")
for set in default production; do
    section "helm lint --strict and helm template ($set values)"
    args=(--kube-version "$RENDER_KUBE_VERSION")
    [ -n "${VALUE_SETS[$set]}" ] && args+=(-f "${VALUE_SETS[$set]}")
    if "$HELM" lint --strict "${args[@]}" "$CHART" >"$WORK/lint-$set.log" 2>&1; then
        pass "helm lint --strict ($set)"
    else
        fail "helm lint --strict ($set)"; sed 's/^/          /' "$WORK/lint-$set.log"
    fi
    if "$HELM" template henvis "$CHART" --namespace henvis "${args[@]}" >"$WORK/$set.yaml" 2>"$WORK/template-$set.log"; then
        pass "helm template ($set): $(grep -c '^kind:' "$WORK/$set.yaml") manifests"
    else
        fail "helm template ($set)"; sed 's/^/          /' "$WORK/template-$set.log"
    fi
done

# --- Kubernetes schemas and the chart's own rules ------------------------------------
section "rendered manifests against the Kubernetes schemas (strict) and the chart's rules"
# Kinds that are not part of Kubernetes itself and have no bundled schema.
SKIPPED_KINDS="ServiceMonitor PrometheusRule"
if "$VENV/bin/python" - "$KUBE_VERSIONS" "$SKIPPED_KINDS" "$WORK/default.yaml" "$WORK/production.yaml" <<'PY'; then
import re
import sys

import yaml
from kubernetes_validate import utils

kube_versions = sys.argv[1].split()
skipped_kinds = set(sys.argv[2].split())
problems = 0


def report(ok: bool, message: str) -> None:
    global problems
    print(f"  {'ok   ' if ok else 'FAIL '} {message}")
    problems += not ok


HARDENED = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
}
COMPONENTS = {"consent-api", "consent-relay", "router-worker", "centre-api", "centre-worker", "stats-api", "stats-worker"}
SECRET_LIKE = re.compile(r"(PASSWORD|SECRET|DATABASE_URL|TOKEN)", re.I)


def pod_rules(name: str, kind: str, pod: dict) -> list[str]:
    """The chart's promises for every pod: hardened, bounded, no inlined secrets."""
    broken = []
    if pod.get("automountServiceAccountToken") is not False:
        broken.append("service account token is mounted")
    if (pod.get("securityContext") or {}).get("seccompProfile", {}).get("type") != "RuntimeDefault":
        broken.append("pod seccompProfile is not RuntimeDefault")
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        context = container.get("securityContext") or {}
        for key, wanted in HARDENED.items():
            if context.get(key) is not wanted:
                broken.append(f"{container['name']}: securityContext.{key} is not {wanted}")
        if context.get("capabilities", {}).get("drop") != ["ALL"] or context.get("capabilities", {}).get("add"):
            broken.append(f"{container['name']}: capabilities are not exactly drop [ALL]")
        if context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            broken.append(f"{container['name']}: seccompProfile is not RuntimeDefault")
        resources = container.get("resources") or {}
        for bound in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(resources.get(bound) or {}):
                broken.append(f"{container['name']}: resources.{bound} lacks cpu or memory")
        for env in container.get("env", []):
            if SECRET_LIKE.search(env["name"]) and "value" in env:
                broken.append(f"{container['name']}: {env['name']} is inlined, not from a Secret")
        # Least privilege: each credential only where it is used.
        names = {env["name"] for env in container.get("env", [])}
        is_worker = any(port.get("name") == "metrics" for port in container.get("ports", []))
        if "HENVIS_KAFKA_SASL_PASSWORD" in names and not is_worker:
            broken.append(f"{container['name']}: holds Kafka credentials but does not talk to Kafka")
        if "HENVIS_CENTRE_SESSION_SECRET" in names and not name.endswith("centre-api"):
            broken.append(f"{container['name']}: holds the centre session secret but is not the centre web app")
        if kind in ("Deployment", "StatefulSet"):
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in container:
                    broken.append(f"{container['name']}: no {probe}")
    return broken


for path in sys.argv[3:]:
    label = path.rsplit("/", 1)[-1].removesuffix(".yaml")
    problems_before = problems
    with open(path) as handle:
        documents = [doc for doc in yaml.safe_load_all(handle) if doc]
    counts: dict[str, int] = {}
    for doc in documents:
        kind, name = doc["kind"], doc["metadata"]["name"]
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "Secret":
            report(False, f"{label}: {kind}/{name}: the chart must reference existing Secrets, never render one")
        if kind in skipped_kinds:
            continue
        for version in kube_versions:
            try:
                utils.validate(doc, version, strict=True)
            except utils.ValidationError as error:
                where = ".".join(str(part) for part in error.path)
                report(False, f"{label}: {kind}/{name} against Kubernetes {version}: {where}: {error.message}")
            except utils.SchemaNotFoundError as error:
                report(False, f"{label}: {kind}/{name}: {error.message}")
        pod = None
        if kind in ("Deployment", "StatefulSet", "Job"):
            pod = doc["spec"]["template"]["spec"]
        elif kind == "CronJob":
            pod = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif kind == "Pod":
            pod = doc["spec"]
        if pod is not None:
            for problem in pod_rules(name, kind, pod):
                report(False, f"{label}: {kind}/{name}: {problem}")
    summary = ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items()))
    validated = sum(count for kind, count in counts.items() if kind not in skipped_kinds)
    report(problems == problems_before, f"{label}: {validated} manifests valid against Kubernetes {' and '.join(kube_versions)} "
           f"(strict, unknown fields refused) and hardened ({summary})")
    for kind in sorted(skipped_kinds & set(counts)):
        print(f"  skip  {label}: {counts[kind]} {kind} (a CRD: no schema bundled with kubernetes-validate)")
    for kinds in (("Deployment", "StatefulSet"), ("Service",)):
        names = {doc["metadata"]["name"].removeprefix("henvis-") for doc in documents if doc["kind"] in kinds}
        missing = COMPONENTS - names
        extra = ", ".join(sorted(names - COMPONENTS))
        report(not missing, f"{label}: a {' or '.join(kinds)} for each of the seven components"
               + (f" (missing: {', '.join(sorted(missing))})" if missing else "") + (f", and {extra}" if extra else ""))
    # Workers that join their group as static members by pod name need stable pod names.
    for doc in documents:
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        env = doc["spec"]["template"]["spec"]["containers"][0].get("env", [])
        static = any(e["name"].endswith("_INSTANCE_ID") and e.get("valueFrom", {}).get("fieldRef") for e in env)
        if static and doc["kind"] != "StatefulSet":
            report(False, f"{label}: {doc['kind']}/{doc['metadata']['name']} uses its pod name as a static member id but is not a StatefulSet")
    stateful = sorted(doc["metadata"]["name"] for doc in documents if doc["kind"] == "StatefulSet")
    report({"henvis-router-worker", "henvis-stats-worker"} <= set(stateful),
           f"{label}: router and stats workers (static members) are StatefulSets: {', '.join(stateful)}")
    report(counts.get("Job") == 3, f"{label}: three migration Jobs (consent, centre, stats)")
    # Each centre topic is consumed by exactly one centre worker Deployment.
    consumed: dict[str, list[str]] = {}
    for doc in documents:
        if doc["kind"] == "Deployment" and "-centre-worker" in doc["metadata"]["name"]:
            env = {e["name"]: e.get("value") for e in doc["spec"]["template"]["spec"]["containers"][0]["env"]}
            for slug in (env.get("HENVIS_CENTRE_CENTRES") or "*").split(","):
                consumed.setdefault(slug, []).append(doc["metadata"]["name"])
    shared = [slug for slug, deployments in consumed.items() if len(deployments) > 1 or ("*" in consumed and slug != "*")]
    report(not shared, f"{label}: each centre topic has one centre worker Deployment ({len(consumed)} consumer set(s))"
           + (f"; consumed twice: {', '.join(shared)}" if shared else ""))
    # NetworkPolicies (rendered by the production values): each part reaches only what it needs.
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in documents if doc["kind"] == "NetworkPolicy"}
    if policies:
        deny = policies.get("henvis-default-deny", {})
        report(not deny.get("ingress") and not deny.get("egress") and deny.get("policyTypes") == ["Ingress", "Egress"],
               f"{label}: a default-deny NetworkPolicy (ingress and egress) selects every pod of the release")
        workloads = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] in ("Deployment", "StatefulSet")}
        wrong = []
        for name, workload in workloads.items():
            spec = policies.get(name)
            if spec is None:
                wrong.append(f"{name}: no NetworkPolicy")
                continue
            env = {e["name"] for e in workload["spec"]["template"]["spec"]["containers"][0].get("env", [])}
            egress_ports = {port["port"] for rule in spec.get("egress", []) for port in rule.get("ports", []) if port["port"] != 53}
            needs = {
                "database": any(e.endswith("_DATABASE_URL") for e in env),
                "kafka": "HENVIS_KAFKA_SASL_PASSWORD" in env,
                # the centre API fetches data keys from the consent API (the key store)
                "key store": "HENVIS_CENTRE_KEY_STORE_URL" in env,
            }
            for what, port in (("database", 5432), ("kafka", 9093), ("key store", 8080)):
                if needs[what] != (port in egress_ports):
                    wrong.append(f"{name}: {'needs' if needs[what] else 'must not reach'} the {what} (port {port})")
            if egress_ports - {5432, 9093, 8080}:
                wrong.append(f"{name}: may also reach ports {sorted(egress_ports - {5432, 9093, 8080})}")
            ingress_ports = {port["port"] for rule in spec.get("ingress", []) for port in rule.get("ports", [])}
            served = {port["containerPort"] for port in workload["spec"]["template"]["spec"]["containers"][0].get("ports", [])}
            if ingress_ports != served:
                wrong.append(f"{name}: ingress open on {sorted(ingress_ports)}, serves {sorted(served)}")
        digest = policies.get("henvis-centre-digest", {})
        digest_ports = {port["port"] for rule in digest.get("egress", []) for port in rule.get("ports", [])}
        if digest and digest_ports != {53, 5432, 587}:
            wrong.append(f"henvis-centre-digest: egress ports {sorted(digest_ports)}, wants DNS, database and SMTP only")
        report(not wrong, f"{label}: NetworkPolicies let each of {len(workloads)} workloads reach only its database "
               "and/or the brokers and receive only on the port it serves" + "".join(f"; {w}" for w in wrong))
sys.exit(1 if problems else 0)
PY
    pass "schema and rule validation"
else
    fail "schema and rule validation (see FAIL lines above)"
fi

# --- the alerts ------------------------------------------------------------------------
section "PrometheusRule: promtool check rules and promtool test rules"
# The rules as the default values render them (release and namespace "henvis"), tested by
# tools/prometheus-rules-test.yaml: each alert fires on its cause and not on look-alikes.
if "$HELM" template henvis "$CHART" --namespace henvis --kube-version "$RENDER_KUBE_VERSION" \
        --set prometheusRule.enabled=true --show-only templates/prometheusrule.yaml >"$WORK/prometheusrule.yaml" 2>"$WORK/rule.log" \
    && "$VENV/bin/python" -c 'import sys, yaml; yaml.safe_dump(yaml.safe_load(open(sys.argv[1]))["spec"], open(sys.argv[2], "w"))' \
        "$WORK/prometheusrule.yaml" "$WORK/rules.yaml" 2>>"$WORK/rule.log"; then
    pass "PrometheusRule rendered ($(grep -c -- '- alert:' "$WORK/prometheusrule.yaml") alerts)"
else
    fail "PrometheusRule did not render"; sed 's/^/          /' "$WORK/rule.log"
fi
if "$PROMTOOL" check rules "$WORK/rules.yaml" >"$WORK/promtool-check.log" 2>&1; then
    pass "promtool check rules: $(grep -o 'SUCCESS: [0-9]* rules found' "$WORK/promtool-check.log")"
else
    fail "promtool check rules"; sed 's/^/          /' "$WORK/promtool-check.log"
fi
cp "$ROOT/tools/prometheus-rules-test.yaml" "$WORK/rules-test.yaml"
if "$PROMTOOL" test rules "$WORK/rules-test.yaml" >"$WORK/promtool-test.log" 2>&1; then
    pass "promtool test rules: $(grep -c '^  - name:' "$WORK/rules-test.yaml") tests of tools/prometheus-rules-test.yaml"
else
    fail "promtool test rules"; sed 's/^/          /' "$WORK/promtool-test.log"
fi

# --- checkov ---------------------------------------------------------------------------
section "checkov over the rendered manifests (skips justified in tools/checkov.yaml)"
# The default values render no NetworkPolicy (networkPolicy.enabled is off until an operator
# names the cluster's peers), so for them CKV2_K8S_6 ("pods without a NetworkPolicy") is
# skipped too; the production values enable the policies and pass it. (checkov's command
# line --skip-check replaces the config file's list, hence the list is read from it.)
config_skips="$("$VENV/bin/python" -c 'import sys, yaml; print(",".join(yaml.safe_load(open(sys.argv[1]))["skip-check"]))' "$ROOT/tools/checkov.yaml")"
declare -A CHECKOV_SKIPS=([default]="$config_skips,CKV2_K8S_6" [production]="$config_skips")
for set in default production; do
    if "$CHECKOV_VENV/bin/checkov" --file "$WORK/$set.yaml" --framework kubernetes \
            --config-file "$ROOT/tools/checkov.yaml" --skip-check "${CHECKOV_SKIPS[$set]}" \
            --compact --quiet >"$WORK/checkov-$set.log" 2>&1; then
        pass "checkov ($set): $(grep -o 'Passed checks: [0-9]*, Failed checks: [0-9]*, Skipped checks: [0-9]*' "$WORK/checkov-$set.log" | head -n 1)"
    else
        fail "checkov ($set):"; sed 's/^/          /' "$WORK/checkov-$set.log"
    fi
done

# --- the Grafana dashboard queries metrics that exist ------------------------------
section "docs/grafana-dashboard.json"
if dashboard_report="$("$VENV/bin/python" - "$ROOT" <<'PY'
import json
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1])
dashboard = json.loads((root / "docs/grafana-dashboard.json").read_text())
queried = set()
for panel in dashboard["panels"]:
    for target in panel.get("targets", []):
        queried |= {re.sub(r"_(bucket|sum|count)$", "", name) for name in re.findall(r"henvis_[a-z_]+", target["expr"])}
defined = set()
for source in list((root / "henvis").rglob("*.py")) + list((root / "services").rglob("*.py")):
    text = source.read_text(encoding="utf-8")
    defined |= set(re.findall(r"[\"'](henvis_[a-z_]+)[\"']", text))
    # Families named in a loop, e.g. f"henvis_stats_{name}" for name in ("acceptance_rate", ...).
    for prefix in re.findall(r"f[\"'](henvis_[a-z_]+)\{", text):
        defined |= {prefix + word for word in re.findall(r"[\"']([a-z_]+)[\"']", text)}
missing = sorted(queried - defined)
if missing:
    print("queries metrics no code defines: " + ", ".join(missing))
    sys.exit(1)
print(f"{len(dashboard['panels'])} panels, {len(queried)} metrics queried, all defined in the code")
PY
)"; then
    pass "$dashboard_report"
else
    fail "docs/grafana-dashboard.json: $dashboard_report"
fi

# --- bad values must fail ------------------------------------------------------------
section "bad values are refused by values.schema.json and the templates"
# Each case: helm --set arguments | text the error must contain.
BAD_VALUES=(
    "consent.api.replicas=-1|/consent/api/replicas"
    "router.worker.replicas=-3|/router/worker/replicas"
    "kafka.bootstrapServers=null|missing property 'bootstrapServers'"
    "kafka.bootstrapServers=|/kafka/bootstrapServers"
    "kafka.bootstrapServers=no-port-given|/kafka/bootstrapServers"
    "kafka.securityProtocol=TLS|/kafka/securityProtocol"
    "kafka.securityProtocol=SASL_SSL|/kafka/sasl/mechanism"
    "kafka.sasl.mechanism=PLAIN|/kafka/securityProtocol"
    "kafka.personalDataRetentionDays=30|/kafka/personalDataRetentionDays"
    "consent.database.existingSecret=|/consent/database/existingSecret"
    "apiClients.existingSecret=null|missing property 'existingSecret'"
    "centre.sessionSecret.existingSecret=|/centre/sessionSecret/existingSecret"
    "consent.api.replicaz=2|additional properties 'replicaz' not allowed"
    "securityContext.readOnlyRootFilesystem=false|/securityContext/readOnlyRootFilesystem"
    "podSecurityContext.runAsNonRoot=false|/podSecurityContext/runAsNonRoot"
    "stats.suppressionThreshold=1|/stats/suppressionThreshold"
    "centre.centres=Herning|/centre/centres"
    "centre.keyStore.existingSecret=|/centre/keyStore/existingSecret"
    "centre.isolatedWorkers[0].centre=aarhus,centre.isolatedWorkers[0].kafkaSaslExistingSecret=x|not a centre in the registry"
    "centre.isolatedWorkers[0].centre=herning|missing property 'kafkaSaslExistingSecret'"
    "router.worker.autoscaling.enabled=true,router.worker.autoscaling.maxReplicas=7|above kafka.partitions"
    "consent.api.autoscaling.enabled=true,consent.api.autoscaling.minReplicas=5,consent.api.autoscaling.maxReplicas=2|above maxReplicas"
    "centre.digest.enabled=true|/centre/digest/inboxUrl"
    "centre.digest.enabled=true,centre.digest.inboxUrl=https://x.example/,centre.digest.smtp.host=smtp,centre.digest.smtp.from=nobody|/centre/digest/smtp/from"
    "centre.deadlineWarning.workingDayOpens=8am|/centre/deadlineWarning/workingDayOpens"
    "prometheusRule.consumerLagThreshold=-1|/prometheusRule/consumerLagThreshold"
    "networkPolicy.kafka.ports=null|missing property 'ports'"
    "centre.login.mode=sso|/centre/login/mode"
    "centre.login.mode=oidc,centre.login.publicUrl=https://henvis.example,centre.login.oidc.issuer=https://idp.example,centre.login.oidc.clientId=henvis|/centre/login/oidc/existingSecret"
    "centre.login.mode=oidc,centre.login.oidc.issuer=https://idp.example,centre.login.oidc.clientId=henvis,centre.login.oidc.existingSecret=s|/centre/login/publicUrl"
    "stats.login.mode=oidc,stats.login.publicUrl=https://stats.example,stats.login.oidc.issuer=https://idp.example,stats.login.oidc.clientId=henvis,stats.login.oidc.existingSecret=s|/stats/sessionSecret/existingSecret"
)
for case in "${BAD_VALUES[@]}"; do
    set_args="${case%%|*}"
    expected="${case#*|}"
    if "$HELM" template henvis "$CHART" --kube-version "$RENDER_KUBE_VERSION" --set "$set_args" >/dev/null 2>"$WORK/bad.log"; then
        fail "--set $set_args was accepted"
    elif grep -qF -- "$expected" "$WORK/bad.log"; then
        pass "--set $set_args is refused ($expected)"
    else
        fail "--set $set_args failed, but not with \"$expected\":"; sed 's/^/          /' "$WORK/bad.log"
    fi
done

echo
echo "helm-check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

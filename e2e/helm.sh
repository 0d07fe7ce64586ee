#!/usr/bin/env bash
# End to end through the Helm chart, on the cluster KUBECONFIG points at (one that can run
# pods and pull IMAGE): helm install charts/postbay into a fresh namespace with the
# evaluation MariaDB, wait for every pod, run `helm test`, apply examples/example.test, wait
# for every resource to be Ready, send a mail with swaks through a port-forward to the smtp
# Service and read it over IMAP through one to the imap Service; then uninstall.
#
#   KUBECONFIG=~/.kube/config IMAGE=registry.example/postbay:dev e2e/helm.sh
#
# Without KUBECONFIG it prints a SKIP line saying that nothing was tested, and exits 0.
# Anything else missing (a tool, IMAGE, an unreachable cluster) is a failure, never a skip.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${KUBECONFIG:-}" ]; then
    echo "SKIP e2e/helm.sh: KUBECONFIG is not set, so there is no cluster to install the chart into;"
    echo "SKIP e2e/helm.sh: helm install, helm test, the operator, swaks and IMAP steps did NOT run."
    exit 0
fi

fail() { echo "FAIL e2e/helm.sh: $*" >&2; exit 1; }
step() { echo "--- $*"; }

HELM="${POSTBAY_HELM:-$(command -v helm || echo /usr/local/lib/postbay-k8s-tools/helm)}"
KUBECTL="${POSTBAY_KUBECTL:-$(command -v kubectl || echo /usr/local/lib/postbay-k8s-tools/kubectl)}"
for tool in "$HELM" "$KUBECTL" swaks curl; do
    command -v "$tool" >/dev/null || fail "$tool is not installed (scripts/install-test-deps)"
done
IMAGE="${IMAGE:-}"
[ -n "$IMAGE" ] || fail "IMAGE (the postbay image the cluster can pull, e.g. from scripts/build-image) is not set"
"$KUBECTL" version >/dev/null 2>&1 || fail "the cluster in KUBECONFIG=$KUBECONFIG does not answer"

RUN_ID="helm$(date +%s)$$"
NS="postbay-$RUN_ID"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ $rc -ne 0 ]; then
        "$KUBECTL" -n "$NS" get pods -o wide >&2 || true
        "$KUBECTL" -n "$NS" logs -l app.kubernetes.io/instance=postbay --all-containers --tail=30 --prefix >&2 || true
    fi
    "$HELM" uninstall postbay -n "$NS" --wait=false >/dev/null 2>&1 || true
    "$KUBECTL" delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

step "helm install into $NS (image $IMAGE, evaluation MariaDB, one replica each)"
"$KUBECTL" create namespace "$NS"
"$HELM" install postbay "$ROOT/charts/postbay" -n "$NS" \
    --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
    --set mariadb.enabled=true --set hostname=mail.example.test \
    --set smtp.replicas=1 --set imap.replicas=1 --set operator.replicas=1 \
    --set smtp.service.type=ClusterIP --set imap.service.type=ClusterIP \
    --set persistence.accessModes='{ReadWriteOnce}' --set persistence.size=1Gi \
    --wait --timeout 10m || fail "helm install did not become ready"

step "helm test"
"$HELM" test postbay -n "$NS" --logs || fail "helm test failed"

step "kubectl apply -f examples/example.test"
"$KUBECTL" apply -n "$NS" -f "$ROOT/examples/example.test"
"$KUBECTL" wait -n "$NS" --for=condition=Ready --timeout=180s \
    maildomain/example mailbox/alice mailbox/bob mailalias/team dkimkey/example-2026 \
    || { "$KUBECTL" get -n "$NS" maildomains,mailboxes,mailaliases,dkimkeys -o yaml >&2; fail "resources did not become Ready"; }

port_forward() { # service remote-port -> prints the local port
    local port=$(( 20000 + RANDOM % 20000 ))
    "$KUBECTL" -n "$NS" port-forward "svc/$1" "$port:$2" >"$WORK/pf-$1-$2.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { echo "$port"; return; }
        sleep 0.2
    done
    fail "port-forward to $1:$2 did not open"
}
SMTP_PORT="$(port_forward postbay-smtp 25)"
IMAP_PORT="$(port_forward postbay-imap 143)"

step "mail to team@example.test with swaks (smtp Service, port 25)"
TOKEN="e2e-$RUN_ID"
swaks --server "127.0.0.1:$SMTP_PORT" --from sender@remote.test --to team@example.test \
    --header "Subject: $TOKEN" --body "hello from $TOKEN" >"$WORK/swaks.log" 2>&1 \
    || { cat "$WORK/swaks.log" >&2; fail "swaks could not deliver"; }

step "reading alice's INBOX over IMAP (imap Service, port 143, STARTTLS)"
got=""
for _ in $(seq 1 60); do
    got="$(curl -s --max-time 5 --ssl-reqd --insecure --user 'alice@example.test:change-me-alice' \
        "imap://127.0.0.1:$IMAP_PORT/INBOX;UID=1" 2>/dev/null || true)"
    case "$got" in *"$TOKEN"*) break ;; esac
    sleep 0.5
done
case "$got" in
    *"$TOKEN"*) ;;
    *) fail "the message did not arrive in alice's INBOX over IMAP" ;;
esac

echo "e2e/helm.sh: 1 passed, 0 failed"

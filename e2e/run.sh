#!/usr/bin/env bash
# End to end, the way an administrator meets Postbay: given KUBECONFIG for any cluster (a
# bare API server is enough, nothing is scheduled on it), install the CRDs, run the operator
# and `postbay dev` as local processes against MariaDB, apply examples/example.test with
# kubectl, wait for every resource to be Ready, send a mail with swaks and read it with
# curl over IMAP.
#
#   KUBECONFIG=~/.kube/config POSTBAY_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306 e2e/run.sh
#
# Without KUBECONFIG it prints a SKIP line saying that nothing was tested, and exits 0.
# Anything else missing (a tool, MariaDB, an unreachable cluster) is a failure, never a skip.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${KUBECONFIG:-}" ]; then
    echo "SKIP e2e: KUBECONFIG is not set, so there is no cluster to install the CRDs into;"
    echo "SKIP e2e: the operator, kubectl apply, swaks and IMAP steps did NOT run."
    exit 0
fi

fail() { echo "FAIL e2e: $*" >&2; exit 1; }
step() { echo "--- $*"; }

for tool in kubectl swaks curl mysql; do
    command -v "$tool" >/dev/null || fail "$tool is not installed"
done
MYSQL_URL="${POSTBAY_TEST_MYSQL_URL:-}"
[ -n "$MYSQL_URL" ] || fail "POSTBAY_TEST_MYSQL_URL (e.g. mysql://root@127.0.0.1:3306) is not set"
kubectl version >/dev/null 2>&1 || fail "the cluster in KUBECONFIG=$KUBECONFIG does not answer"

POSTBAY="${POSTBAY_BIN:-$ROOT/target/debug/postbay}"
if [ -z "${POSTBAY_BIN:-}" ]; then
    step "building postbay"
    (cd "$ROOT" && cargo build -p postbay)
fi
[ -x "$POSTBAY" ] || fail "no postbay binary at $POSTBAY"

RUN_ID="e2e$(date +%s)$$"
NS="postbay-$RUN_ID"
DB="postbay_$RUN_ID"
WORK="$(mktemp -d)"
BASE=$(( 20000 + RANDOM % 20000 ))
SMTP_PORT=$(( BASE + 25 ))
IMAP_PORT=$(( BASE + 143 ))
METRICS_PORT=$(( BASE + 80 ))
PIDS=()

mysql_args() { # mysql://user[:password]@host[:port] -> mysql client flags
    local rest="${MYSQL_URL#*://}" creds hostport
    rest="${rest%/}"; creds="${rest%@*}"; hostport="${rest##*@}"
    echo "-u${creds%%:*} $( [ "${creds#*:}" != "$creds" ] && echo "-p${creds#*:}") -h${hostport%%:*} -P$( [ "${hostport#*:}" != "$hostport" ] && echo "${hostport#*:}" || echo 3306)"
}

cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
    # shellcheck disable=SC2046
    mysql $(mysql_args) -e "DROP DATABASE IF EXISTS \`$DB\`" 2>/dev/null || true
    if [ $rc -ne 0 ]; then
        echo "--- logs (operator, dev) in $WORK" >&2
        tail -n 30 "$WORK/operator.log" "$WORK/dev.log" >&2 || true
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

step "database $DB"
# shellcheck disable=SC2046
mysql $(mysql_args) -e "CREATE DATABASE \`$DB\`"
DATABASE_URL="${MYSQL_URL%/}/$DB"

step "CRDs"
"$POSTBAY" crds | kubectl apply -f -
kubectl wait --for=condition=Established --timeout=60s \
    crd/maildomains.postbay.dev crd/mailboxes.postbay.dev crd/mailaliases.postbay.dev crd/dkimkeys.postbay.dev
kubectl create namespace "$NS"

step "operator (leader election in $NS) and postbay dev on 127.0.0.1:$BASE+"
POD_NAME="$RUN_ID" POD_NAMESPACE="$NS" "$POSTBAY" operator --database-url "$DATABASE_URL" \
    --mail-host mail.example.test --metrics-addr "127.0.0.1:$METRICS_PORT" >"$WORK/operator.log" 2>&1 &
PIDS+=($!)
"$POSTBAY" dev --data "$WORK/data" --port-base "$BASE" --database-url "$DATABASE_URL" >"$WORK/dev.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$METRICS_PORT/readyz" >/dev/null 2>&1 && break
    sleep 0.3
done
curl -fsS "http://127.0.0.1:$METRICS_PORT/readyz" >/dev/null || fail "operator not ready (see operator.log)"

step "kubectl apply -f examples/example.test"
kubectl apply -n "$NS" -f "$ROOT/examples/example.test"
kubectl wait -n "$NS" --for=condition=Ready --timeout=120s \
    maildomain/example mailbox/alice mailbox/bob mailalias/team dkimkey/example-2026 \
    || { kubectl get -n "$NS" maildomains,mailboxes,mailaliases,dkimkeys -o yaml >&2; fail "resources did not become Ready"; }
kubectl get -n "$NS" maildomain/example -o jsonpath='{range .status.dnsRecords[*]}{.name} {.type} {.value}{"\n"}{end}'
kubectl get -n "$NS" secret/example-2026-dkim >/dev/null || fail "the generated DKIM Secret is missing"
curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" | grep -q 'postbay_operator_leader 1' || fail "metrics do not show this replica as leader"

step "mail to team@example.test with swaks"
for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$SMTP_PORT") 2>/dev/null && break
    sleep 0.2
done
TOKEN="e2e-$RUN_ID"
swaks --server "127.0.0.1:$SMTP_PORT" --from sender@remote.test --to team@example.test \
    --header "Subject: $TOKEN" --body "hello from $TOKEN" >"$WORK/swaks.log" 2>&1 \
    || { cat "$WORK/swaks.log" >&2; fail "swaks could not deliver"; }

step "reading alice's INBOX over IMAP with curl"
got=""
for _ in $(seq 1 50); do
    got="$(curl -s --max-time 5 --user 'alice@example.test:change-me-alice' \
        "imap://127.0.0.1:$IMAP_PORT/INBOX;UID=1" 2>/dev/null || true)"
    case "$got" in *"$TOKEN"*) break ;; esac
    sleep 0.3
done
case "$got" in
    *"$TOKEN"*) ;;
    *) fail "the message did not arrive in alice's INBOX over IMAP on port $IMAP_PORT" ;;
esac

step "deleting the Mailbox removes its row"
kubectl delete -n "$NS" mailbox/bob --wait=true --timeout=60s
# shellcheck disable=SC2046
left="$(mysql $(mysql_args) -N -e "SELECT COUNT(*) FROM \`$DB\`.mailboxes WHERE address = 'bob@example.test'")"
[ "$left" = "0" ] || fail "bob's row is still there after the Mailbox was deleted"

echo "e2e: 1 passed, 0 failed"

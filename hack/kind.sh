#!/usr/bin/env bash
# The kind workflow behind `make kind-up`, `make demo` and `make kind-down`.
#
#   hack/kind.sh up      create the cluster if missing, build and load the image,
#                        make certificates, apply manifests/overlays/kind, wait
#   hack/kind.sh demo    deploy examples/ and watch the hung worker get restarted
#   hack/kind.sh down    delete the cluster (generated certificates are kept)
#   hack/kind.sh certs   only (re)write the certificates the kind overlay loads
#
# Every step is safe to rerun. kubectl always runs with --context kind-<cluster>,
# so no other cluster is ever touched.
#
# Environment:
#   HEARTBEAT_KIND_CLUSTER    cluster name (default heartbeat-webhook)
#   HEARTBEAT_IMAGE           image tag; the manifests use heartbeat-webhook:dev
#   BASE_IMAGE                passed to `docker build --build-arg` when set
#   HEARTBEAT_CLI             the heartbeat-webhook command (default: .venv's, else PATH)
#   HEARTBEAT_KIND_GENERATED  where certs go (default manifests/overlays/kind/generated)
#   DEMO_TIMEOUT              seconds `demo` waits for the restart (default 180)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly CLUSTER="${HEARTBEAT_KIND_CLUSTER:-heartbeat-webhook}"
readonly CONTEXT="kind-$CLUSTER"
readonly IMAGE="${HEARTBEAT_IMAGE:-heartbeat-webhook:dev}"
readonly OVERLAY="$ROOT/manifests/overlays/kind"
readonly GENERATED="${HEARTBEAT_KIND_GENERATED:-$OVERLAY/generated}"
readonly NAMESPACE=heartbeat-system
readonly SERVICE=heartbeat-webhook
readonly DEMO_NAMESPACE=heartbeat-demo
readonly DEMO_LABEL=app.kubernetes.io/name=heartbeat-demo

log() { printf 'kind: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
    exit 2
}

need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool is not installed (needed for: $COMMAND)"
    done
}

k() { kubectl --context "$CONTEXT" "$@"; }

cluster_exists() { kind get clusters 2>/dev/null | grep -qxF "$CLUSTER"; }

heartbeat_cli() {
    if [[ -n "${HEARTBEAT_CLI:-}" ]]; then
        printf '%s\n' "$HEARTBEAT_CLI"
    elif [[ -x "$ROOT/.venv/bin/heartbeat-webhook" ]]; then
        printf '%s\n' "$ROOT/.venv/bin/heartbeat-webhook"
    elif command -v heartbeat-webhook >/dev/null; then
        command -v heartbeat-webhook
    else
        die "no heartbeat-webhook command: run 'make run' once (it makes .venv) or set HEARTBEAT_CLI"
    fi
}

cmd_certs() {
    local cli
    cli="$(heartbeat_cli)"
    # Reuses the CA already in $GENERATED, so the caBundle registered in the
    # cluster stays valid; the serving pair is new on every run.
    "$cli" certs --service "$SERVICE" --namespace "$NAMESPACE" --out "$GENERATED" >/dev/null
    log "certificates in $GENERATED (ca.key stays there; the Secret gets tls.crt, tls.key, ca.crt)"
}

cmd_up() {
    need docker kind kubectl
    if cluster_exists; then
        log "cluster $CLUSTER exists; reusing it"
    else
        log "creating cluster $CLUSTER"
        kind create cluster --name "$CLUSTER" --wait 120s
    fi
    log "building $IMAGE"
    local build_args=()
    [[ -z "${BASE_IMAGE:-}" ]] || build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
    docker build "${build_args[@]}" -t "$IMAGE" "$ROOT"
    log "loading $IMAGE into $CLUSTER"
    kind load docker-image "$IMAGE" --name "$CLUSTER"
    cmd_certs
    local existed=false
    if k -n "$NAMESPACE" get deployment "$SERVICE" >/dev/null 2>&1; then
        existed=true
    fi
    log "applying manifests/overlays/kind"
    k apply -k "$OVERLAY"
    if "$existed"; then
        # Same tag, new image: only a restart makes the pods use it.
        k -n "$NAMESPACE" rollout restart deployment "$SERVICE"
    fi
    k -n "$NAMESPACE" rollout status deployment "$SERVICE" --timeout=180s
    log "ready: annotate pods heartbeat/enabled=\"true\", or run 'make demo'"
}

demo_pod() {
    # The newest pod that is not terminating (a restarted rollout leaves the
    # old one behind for a moment).
    k -n "$DEMO_NAMESPACE" get pods -l "$DEMO_LABEL" --sort-by=.metadata.creationTimestamp \
        -o go-template='{{range .items}}{{if not .metadata.deletionTimestamp}}{{.metadata.name}}{{"\n"}}{{end}}{{end}}' |
        tail -n 1
}

cmd_demo() {
    need kubectl
    k -n "$NAMESPACE" rollout status deployment "$SERVICE" --timeout=60s >/dev/null ||
        die "the webhook is not running in $CONTEXT: run 'make kind-up' first"
    local existed=false
    if k -n "$DEMO_NAMESPACE" get deployment heartbeat-demo >/dev/null 2>&1; then
        existed=true
    fi
    log "deploying examples/ (worker beats every 2 s, hangs after 8 iterations)"
    k apply -k "$ROOT/examples"
    if "$existed"; then
        k -n "$DEMO_NAMESPACE" rollout restart deployment heartbeat-demo
    fi
    k -n "$DEMO_NAMESPACE" rollout status deployment heartbeat-demo --timeout=120s

    local pod injected
    pod="$(demo_pod)"
    [[ -n "$pod" ]] || die "no demo pod found"
    # With failurePolicy Ignore, a pod created while the webhook was not yet
    # reachable is admitted without the probe: say so rather than wait forever.
    injected="$(k -n "$DEMO_NAMESPACE" get pod "$pod" -o jsonpath='{.metadata.annotations.heartbeat/injected}')"
    if [[ -z "$injected" ]]; then
        die "pod $pod has no heartbeat/injected annotation: it was admitted without the probe (webhook unreachable at the time; failurePolicy Ignore). Run 'make demo' again."
    fi
    log "pod $pod injected: heartbeat/injected=$injected"
    k -n "$DEMO_NAMESPACE" get pod "$pod" \
        -o jsonpath='{range .spec.containers[0].env[*]}{"  env "}{.name}={.value}{"\n"}{end}{"  livenessProbe period="}{.spec.containers[0].livenessProbe.periodSeconds}{"s failureThreshold="}{.spec.containers[0].livenessProbe.failureThreshold}{"\n"}' >&2

    log "watching $pod until the kubelet restarts it (timeout ${DEMO_TIMEOUT:-180}s)"
    local start=$SECONDS deadline=$((SECONDS + ${DEMO_TIMEOUT:-180})) restarts=0 line previous=""
    local columns='NAME:.metadata.name,STATUS:.status.phase,READY:.status.containerStatuses[0].ready'
    columns+=',RESTARTS:.status.containerStatuses[0].restartCount'
    columns+=',LAST-EXIT:.status.containerStatuses[0].lastState.terminated.exitCode'
    printf '%-8s%s\n' ELAPSED "NAME  STATUS  READY  RESTARTS  LAST-EXIT"
    while ((SECONDS < deadline)); do
        # Like `kubectl get pod -w`: a line whenever something changes.
        line="$(k -n "$DEMO_NAMESPACE" get pod "$pod" --no-headers -o "custom-columns=$columns" 2>/dev/null || true)"
        [[ "$line" == "$previous" ]] || printf '%-8s%s\n' "$((SECONDS - start))s" "$line"
        previous="$line"
        restarts="$(k -n "$DEMO_NAMESPACE" get pod "$pod" -o jsonpath='{.status.containerStatuses[0].restartCount}' 2>/dev/null || true)"
        ((${restarts:-0} >= 1)) && break
        sleep 2
    done
    ((${restarts:-0} >= 1)) || die "no restart within ${DEMO_TIMEOUT:-180}s; see: kubectl --context $CONTEXT -n $DEMO_NAMESPACE describe pod $pod"
    log "restarted; the probe's reason is in the Unhealthy event:"
    k -n "$DEMO_NAMESPACE" get events \
        --field-selector "involvedObject.name=$pod,reason=Unhealthy" \
        -o custom-columns=REASON:.reason,MESSAGE:.message
    log "the worker's log before the restart:"
    k -n "$DEMO_NAMESPACE" logs "$pod" --previous --tail=5 || true
}

cmd_down() {
    need kind
    if cluster_exists; then
        kind delete cluster --name "$CLUSTER"
    else
        log "no cluster $CLUSTER; nothing to delete"
    fi
    log "kept $GENERATED (the CA is reused next time; delete it to start over)"
}

COMMAND="${1:-}"
case "$COMMAND" in
up) cmd_up ;;
demo) cmd_demo ;;
down) cmd_down ;;
certs) cmd_certs ;;
*) usage ;;
esac

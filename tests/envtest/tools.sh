#!/usr/bin/env bash
# Provide the tools the manifest tests and the kind workflow render with:
#
#   kustomize                                   built from sigs.k8s.io/kustomize/kustomize/v5
#   promtool                                    built from github.com/prometheus/prometheus
#   crds/cert-manager/*.yaml                    cert-manager's CRDs (deploy/crds/ of its module)
#   crds/prometheus-operator/*.yaml             the PrometheusRule and ServiceMonitor CRDs
#
# Everything comes from the Go module proxy (`go install`, `go mod download`)
# into a per-version cache directory outside the repository. The first run takes
# about 7 minutes on 2 cores with empty Go caches (kustomize ~30 s, promtool ~6 min,
# mostly its dependencies); later runs only check the cache.
#
# The directory is printed as the last line on stdout; progress goes to stderr:
#
#   HEARTBEAT_TOOLS="$(tests/envtest/tools.sh | tail -n 1)"
#
# Environment:
#   HEARTBEAT_TOOLS                      a directory already laid out as above; used as-is
#   HEARTBEAT_KUSTOMIZE_VERSION          default below
#   HEARTBEAT_PROMETHEUS_VERSION         Go module version of prometheus (v0.316.0 = Prometheus 3.16.0)
#   HEARTBEAT_CERT_MANAGER_VERSION       default below
#   HEARTBEAT_PROMETHEUS_OPERATOR_VERSION
#                                        default below
#   HEARTBEAT_TOOLS_CACHE                cache root
#                                        (default ${XDG_CACHE_HOME:-$HOME/.cache}/heartbeat-webhook/tools)
set -euo pipefail

# Pinned, tested defaults (bump deliberately). kustomize v5.8.3 declares
# `go 1.27.0`; v5.8.2 is the newest that builds with a Go 1.26 toolchain.
readonly DEFAULT_KUSTOMIZE_VERSION=v5.8.2
# Prometheus tags its Go module v0.3XY.Z for release v3.XY.Z.
readonly DEFAULT_PROMETHEUS_VERSION=v0.316.0
readonly DEFAULT_CERT_MANAGER_VERSION=v1.21.2
readonly DEFAULT_PROMETHEUS_OPERATOR_VERSION=v0.85.0

# CRD files inside the modules (paths as of the versions above).
readonly CERT_MANAGER_CRD_DIR=deploy/crds
readonly PROMETHEUS_OPERATOR_CRDS=(
    example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml
    example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml
)

LOG_PREFIX=tools
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# complete DIR: DIR holds every tool, at the expected versions when a VERSIONS
# file says so (a hand-made HEARTBEAT_TOOLS directory may lack it).
complete() {
    local dir="$1"
    [[ -n "$dir" && -x "$dir/kustomize" && -x "$dir/promtool" ]] || return 1
    compgen -G "$dir/crds/cert-manager/*.yaml" >/dev/null || return 1
    local crd
    for crd in "${PROMETHEUS_OPERATOR_CRDS[@]}"; do
        [[ -f "$dir/crds/prometheus-operator/${crd##*/}" ]] || return 1
    done
}

if [[ -n "${HEARTBEAT_TOOLS:-}" ]]; then
    if complete "$HEARTBEAT_TOOLS"; then
        log "using HEARTBEAT_TOOLS=$HEARTBEAT_TOOLS"
        printf '%s\n' "$HEARTBEAT_TOOLS"
        exit 0
    fi
    log "HEARTBEAT_TOOLS=$HEARTBEAT_TOOLS lacks kustomize, promtool or a CRD; ignoring it"
fi

KUSTOMIZE_VERSION="$(vprefix "${HEARTBEAT_KUSTOMIZE_VERSION:-$DEFAULT_KUSTOMIZE_VERSION}")"
PROMETHEUS_VERSION="$(vprefix "${HEARTBEAT_PROMETHEUS_VERSION:-$DEFAULT_PROMETHEUS_VERSION}")"
CERT_MANAGER_VERSION="$(vprefix "${HEARTBEAT_CERT_MANAGER_VERSION:-$DEFAULT_CERT_MANAGER_VERSION}")"
PROMETHEUS_OPERATOR_VERSION="$(vprefix "${HEARTBEAT_PROMETHEUS_OPERATOR_VERSION:-$DEFAULT_PROMETHEUS_OPERATOR_VERSION}")"
for version in "$KUSTOMIZE_VERSION" "$PROMETHEUS_VERSION" "$CERT_MANAGER_VERSION" "$PROMETHEUS_OPERATOR_VERSION"; do
    [[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] ||
        die "$version is not a vMAJOR.MINOR.PATCH version"
done
[[ "$KUSTOMIZE_VERSION" == v5.* ]] || die "kustomize $KUSTOMIZE_VERSION: only v5.x is supported"

readonly VERSIONS="kustomize=$KUSTOMIZE_VERSION prometheus=$PROMETHEUS_VERSION cert-manager=$CERT_MANAGER_VERSION prometheus-operator=$PROMETHEUS_OPERATOR_VERSION"
CACHE_ROOT="${HEARTBEAT_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/heartbeat-webhook/tools}"
readonly DEST="$CACHE_ROOT/kustomize-${KUSTOMIZE_VERSION#v}-prometheus-${PROMETHEUS_VERSION#v}-cert-manager-${CERT_MANAGER_VERSION#v}-prometheus-operator-${PROMETHEUS_OPERATOR_VERSION#v}"

cached() {
    complete "$1" && [[ "$(cat "$1/VERSIONS" 2>/dev/null)" == "$VERSIONS" ]]
}

if cached "$DEST"; then
    log "using cached $DEST"
    printf '%s\n' "$DEST"
    exit 0
fi

command -v go >/dev/null || die "go is required to build kustomize and promtool and fetch the CRDs (or set HEARTBEAT_TOOLS)"

lock_cache "$CACHE_ROOT"
if cached "$DEST"; then
    printf '%s\n' "$DEST"
    exit 0
fi

WORK="$(mktemp -d "$CACHE_ROOT/.work.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
# Module commands run outside any module and workspace.
cd "$WORK"
export GOWORK=off
export CGO_ENABLED=0
mkdir -p "$WORK/out/crds/cert-manager" "$WORK/out/crds/prometheus-operator"

# module_dir MODULE@VERSION: download it and print its extracted directory.
module_dir() {
    local json dir
    if ! json="$(go mod download -json "$1")"; then
        log "$(sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")"
        die "go mod download $1 failed (is the version published on \$GOPROXY?)"
    fi
    dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json" | head -n 1)"
    [[ -d "$dir" ]] || die "go mod download $1 gave no module directory"
    printf '%s\n' "$dir"
}

# install PACKAGE@VERSION [LDFLAGS...]: `go install` into $WORK/out. Neither
# kustomize/v5's nor prometheus' go.mod has replace directives, so
# `go install module@version` works without a wrapper module.
install() {
    local started=$SECONDS
    if ! GOBIN="$WORK/out" go install -trimpath -ldflags "-s -w ${*:2}" "$1" 2>"$WORK/install.err"; then
        tail -n 40 "$WORK/install.err" >&2
        die "go install $1 failed"
    fi
    log "  built in $((SECONDS - started))s"
}

start=$SECONDS
log "building kustomize $KUSTOMIZE_VERSION (go install; about 30 s with empty Go caches)..."
install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
built="$("$WORK/out/kustomize" version 2>/dev/null || true)"
[[ "$built" == "$KUSTOMIZE_VERSION" ]] || die "the built kustomize reports '$built', expected $KUSTOMIZE_VERSION"

log "building promtool $PROMETHEUS_VERSION (go install; about 6 min with empty Go caches)..."
install "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" \
    "-X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION"
"$WORK/out/promtool" --version >/dev/null 2>&1 || die "the built promtool does not run"

log "fetching cert-manager $CERT_MANAGER_VERSION CRDs (go mod download)..."
cm_dir="$(module_dir "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION")"
shopt -s nullglob
cm_crds=("$cm_dir/$CERT_MANAGER_CRD_DIR"/*.yaml)
shopt -u nullglob
((${#cm_crds[@]} > 0)) ||
    die "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION has no $CERT_MANAGER_CRD_DIR/*.yaml"
cp "${cm_crds[@]}" "$WORK/out/crds/cert-manager/"
log "  ${#cm_crds[@]} CRDs from $CERT_MANAGER_CRD_DIR/"

log "fetching prometheus-operator $PROMETHEUS_OPERATOR_VERSION CRDs (go mod download)..."
po_dir="$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")"
for crd in "${PROMETHEUS_OPERATOR_CRDS[@]}"; do
    [[ -f "$po_dir/$crd" ]] ||
        die "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION has no $crd"
    cp "$po_dir/$crd" "$WORK/out/crds/prometheus-operator/"
done
log "  ${#PROMETHEUS_OPERATOR_CRDS[@]} CRDs from ${PROMETHEUS_OPERATOR_CRDS[0]%/*}/"

# Files copied out of the read-only module cache stay read-only; let a later
# `rm -rf` of the cache work without chmod.
chmod -R u+w "$WORK/out"
printf '%s\n' "$VERSIONS" >"$WORK/out/VERSIONS"
cached "$WORK/out" || die "the new tools directory is incomplete"
rm -rf "$DEST"
mv "$WORK/out" "$DEST"
log "cached in $DEST ($((SECONDS - start))s)"
printf '%s\n' "$DEST"

#!/usr/bin/env bash
# Provide real kube-apiserver and etcd binaries for the envtest-style
# integration tests (the binaries controller-runtime's envtest runs).
#
# Resolution order:
#   1. $KUBEBUILDER_ASSETS, if it contains both executables (setup-envtest);
#   2. kube-apiserver and etcd both on PATH;
#   3. a per-version cache directory, building the binaries from Go modules
#      on first use (k8s.io/kubernetes and go.etcd.io/etcd/server/v3).
#
# The directory holding kube-apiserver and etcd is printed as the last (and
# only) line on stdout; all progress output goes to stderr.  Typical use:
#
#   KUBEBUILDER_ASSETS="$(tests/envtest/assets.sh)"
#   export KUBEBUILDER_ASSETS
#
# Environment:
#   HEARTBEAT_K8S_VERSION      kubernetes release to build (default below)
#   HEARTBEAT_ETCD_VERSION     etcd release to build (default below)
#   HEARTBEAT_ENVTEST_CACHE    cache root
#                              (default ${XDG_CACHE_HOME:-$HOME/.cache}/heartbeat-webhook/envtest)
#   HEARTBEAT_GOTOOLCHAIN      toolchain used only if the local go is older than
#                              a module requires (default go1.27.3)
#   KUBEBUILDER_ASSETS         pre-provisioned binaries to use as-is
#
# The first build takes roughly 5-15 minutes on 2 cores (mostly
# kube-apiserver); later runs only check the cache.
set -euo pipefail

# Pinned, tested defaults (reproducible; bump deliberately).
readonly DEFAULT_K8S_VERSION=v1.37.2
readonly DEFAULT_ETCD_VERSION=v3.6.17

LOG_PREFIX=assets
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

has_both() { [[ -n "$1" && -x "$1/kube-apiserver" && -x "$1/etcd" ]]; }

# ---------------------------------------------------------------------------
# 1. KUBEBUILDER_ASSETS
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    if has_both "$KUBEBUILDER_ASSETS"; then
        log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
        printf '%s\n' "$KUBEBUILDER_ASSETS"
        exit 0
    fi
    log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks kube-apiserver and/or etcd; ignoring it"
fi

K8S_VERSION="$(vprefix "${HEARTBEAT_K8S_VERSION:-$DEFAULT_K8S_VERSION}")"
ETCD_VERSION="$(vprefix "${HEARTBEAT_ETCD_VERSION:-$DEFAULT_ETCD_VERSION}")"
[[ "$K8S_VERSION" =~ ^v1\.([0-9]+)\.([0-9]+)(-[0-9A-Za-z.-]+)?$ ]] ||
    die "HEARTBEAT_K8S_VERSION=$K8S_VERSION is not a v1.N.P kubernetes version"
readonly K8S_MINOR="${BASH_REMATCH[1]}"
# Staging modules (k8s.io/api, ...) are tagged v0.N.P for kubernetes v1.N.P.
readonly STAGING_VERSION="v0.${K8S_VERSION#v1.}"
[[ "$ETCD_VERSION" =~ ^v3\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] ||
    die "HEARTBEAT_ETCD_VERSION=$ETCD_VERSION is not a v3.N.P etcd version"

CACHE_ROOT="${HEARTBEAT_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/heartbeat-webhook/envtest}"
readonly DEST="$CACHE_ROOT/k8s-${K8S_VERSION#v}-etcd-${ETCD_VERSION#v}"

# ---------------------------------------------------------------------------
# 2. Binaries on PATH
path_apiserver="$(command -v kube-apiserver || true)"
path_etcd="$(command -v etcd || true)"
if [[ -n "$path_apiserver" && -n "$path_etcd" ]]; then
    if [[ "$(dirname "$path_apiserver")" == "$(dirname "$path_etcd")" ]]; then
        dir="$(dirname "$path_apiserver")"
    else
        # envtest wants one directory: link both into the cache.
        dir="$CACHE_ROOT/from-path"
        mkdir -p "$dir"
        ln -sfn "$path_apiserver" "$dir/kube-apiserver"
        ln -sfn "$path_etcd" "$dir/etcd"
    fi
    log "using kube-apiserver ($path_apiserver) and etcd ($path_etcd) from PATH"
    printf '%s\n' "$dir"
    exit 0
fi

# ---------------------------------------------------------------------------
# 3. Per-version cache, built from Go modules on first use.

# Cheap sanity check that cached binaries are the expected versions.
versions_ok() {
    local dir="$1" out
    has_both "$dir" || return 1
    out="$("$dir/kube-apiserver" --version 2>/dev/null)" || return 1
    [[ "$out" == "Kubernetes $K8S_VERSION" ]] || {
        log "$dir/kube-apiserver reports '$out', expected 'Kubernetes $K8S_VERSION'"
        return 1
    }
    out="$("$dir/etcd" --version 2>/dev/null)" || return 1
    [[ "$out" == *"etcd Version: ${ETCD_VERSION#v}"* ]] || {
        log "$dir/etcd reports '${out%%$'\n'*}', expected etcd ${ETCD_VERSION#v}"
        return 1
    }
}

if versions_ok "$DEST"; then
    log "using cached $DEST"
    printf '%s\n' "$DEST"
    exit 0
fi

command -v go >/dev/null || die "go is required to build kube-apiserver and etcd (or set KUBEBUILDER_ASSETS)"

lock_cache "$CACHE_ROOT"
# The other run may have finished the same build while we waited.
if versions_ok "$DEST"; then
    printf '%s\n' "$DEST"
    exit 0
fi

WORK="$(mktemp -d "$CACHE_ROOT/.work.XXXXXX")"
# Module queries below run outside any module (no go.mod in $WORK).
cd "$WORK"
cleanup() {
    stop_bg
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Keep the user's go env (module and build caches are shared), but never let
# a go.work outside the wrapper modules interfere.
export GOWORK=off
export CGO_ENABLED=0

# Download MODULE@VERSION (and its go.mod) and print `go mod download -json`.
mod_download_json() {
    local out
    if ! out="$(go mod download -json "$1")"; then
        log "$(json_field Error <<<"$out")"
        die "go mod download $1 failed (is the version published on \$GOPROXY?)"
    fi
    printf '%s\n' "$out"
}

# Minimal go version a go.mod file declares ("1.26.0").
gomod_go_version() { go mod edit -json "$1" | json_field Go; }

log "building kube-apiserver $K8S_VERSION and etcd $ETCD_VERSION into $DEST"
log "resolving module metadata (go mod download)..."
k8s_json="$(mod_download_json "k8s.io/kubernetes@$K8S_VERSION")"
K8S_GOMOD="$(json_field GoMod <<<"$k8s_json")"
etcd_json="$(mod_download_json "go.etcd.io/etcd/server/v3@$ETCD_VERSION")"
ETCD_GOMOD="$(json_field GoMod <<<"$etcd_json")"
[[ -f "$K8S_GOMOD" && -f "$ETCD_GOMOD" ]] || die "could not locate downloaded go.mod files"

# Pick a toolchain: keep the local go unless a module needs a newer one.
LOCAL_GO="$(go env GOVERSION)"
LOCAL_GO="${LOCAL_GO#go}"
K8S_GO="$(gomod_go_version "$K8S_GOMOD")"
ETCD_GO="$(gomod_go_version "$ETCD_GOMOD")"
for need in "$K8S_GO" "$ETCD_GO"; do
    if version_lt "$LOCAL_GO" "$need"; then
        export GOTOOLCHAIN="${HEARTBEAT_GOTOOLCHAIN:-go1.27.3}"
        log "go $LOCAL_GO is older than required go $need; using GOTOOLCHAIN=$GOTOOLCHAIN"
        break
    fi
done

# Staging modules: every k8s.io/* module the kubernetes go.mod requires at
# v0.0.0 (they are replaced by ./staging/src/... there, which does not apply
# to a dependency).  Derived from the release's own go.mod, not hard-coded.
# Also carry over its godebug settings.
k8s_mod_json="$(go mod edit -json "$K8S_GOMOD")"
mapfile -t STAGING < <(awk '
    /^\t"[A-Za-z]+": / { section = $1; gsub(/[":]/, "", section) }
    section == "Require" && $1 == "\"Path\":" { p = $2; gsub(/[",]/, "", p) }
    section == "Require" && $1 == "\"Version\":" {
        v = $2; gsub(/[",]/, "", v)
        if (p ~ /^k8s\.io\// && v == "v0.0.0") print p
    }' <<<"$k8s_mod_json")
((${#STAGING[@]} > 0)) || die "found no k8s.io/* v0.0.0 requirements in $K8S_GOMOD"
mapfile -t GODEBUG_LINES < <(awk '
    /^\t"[A-Za-z]+": / { section = $1; gsub(/[":]/, "", section) }
    section == "GoDebug" && $1 == "\"Key\":" { k = $2; gsub(/[",]/, "", k) }
    section == "GoDebug" && $1 == "\"Value\":" { v = $2; gsub(/[",]/, "", v); print k "=" v }
    ' <<<"$k8s_mod_json")

# --- kube-apiserver wrapper module ------------------------------------------
APISERVER_MOD="$WORK/kube-apiserver"
mkdir -p "$APISERVER_MOD" "$WORK/out"
edit_args=(-go="$K8S_GO" -require="k8s.io/kubernetes@$K8S_VERSION")
for m in "${STAGING[@]}"; do
    edit_args+=(-replace="$m=$m@$STAGING_VERSION")
done
for g in "${GODEBUG_LINES[@]}"; do
    edit_args+=(-godebug="$g")
done
printf 'module heartbeat-webhook.invalid/envtest/kube-apiserver\n' >"$APISERVER_MOD/go.mod"
(cd "$APISERVER_MOD" && go mod edit "${edit_args[@]}")
log "kube-apiserver wrapper: k8s.io/kubernetes $K8S_VERSION, ${#STAGING[@]} staging modules replaced at $STAGING_VERSION"

# Version stamping, as kubernetes' hack/lib/version.sh does for both
# k8s.io/component-base/version and k8s.io/client-go/pkg/version.  The proxy
# does not expose the release commit, so gitCommit is left empty; buildDate is
# the release's publication time, keeping the build reproducible.
build_date="$(go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' "k8s.io/kubernetes@$K8S_VERSION" 2>/dev/null || true)"
[[ -n "$build_date" ]] || build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION"
    ldflags+=" -X $pkg.gitMajor=1 -X $pkg.gitMinor=$K8S_MINOR"
    ldflags+=" -X $pkg.gitCommit= -X $pkg.gitTreeState=clean"
    ldflags+=" -X $pkg.buildDate=$build_date"
done

APISERVER_PKG=k8s.io/kubernetes/cmd/kube-apiserver
# Same tags as the upstream release build (hack/lib/golang.sh).
APISERVER_TAGS=selinux,notest,grpcnotrace

COUNT_WHAT="modules downloaded"
log "downloading kube-apiserver dependencies (go mod download)..."
run_bg "kube-apiserver download" "$APISERVER_MOD" "$WORK/apiserver-list.err" '^go: downloading ' \
    "$WORK/apiserver-pkgs" "$WORK/apiserver-list.err" \
    go list -mod=mod -tags "$APISERVER_TAGS" -deps -f '{{.ImportPath}}' "$APISERVER_PKG"
total="$(wc -l <"$WORK/apiserver-pkgs" | tr -d ' ')"

COUNT_WHAT="of $total packages compiled"
log "building kube-apiserver $K8S_VERSION (first run takes 5-15 min)..."
run_bg "kube-apiserver build" "$APISERVER_MOD" "$WORK/apiserver-build.err" '^[^ #]' \
    /dev/null "$WORK/apiserver-build.err" \
    go build -mod=mod -v -trimpath -tags "$APISERVER_TAGS" -ldflags "$ldflags" \
    -o "$WORK/out/kube-apiserver" "$APISERVER_PKG"

# --- etcd wrapper module ----------------------------------------------------
# go.etcd.io/etcd/server/v3 is itself the etcd main package.  Its go.mod only
# replaces sibling etcd modules with ../ paths, and requires them at the same
# release version, so a wrapper needs no replace directives.
ETCD_MOD="$WORK/etcd"
mkdir -p "$ETCD_MOD"
printf 'module heartbeat-webhook.invalid/envtest/etcd\n' >"$ETCD_MOD/go.mod"
(cd "$ETCD_MOD" && go mod edit -go="$ETCD_GO" -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION")
ETCD_PKG=go.etcd.io/etcd/server/v3

COUNT_WHAT="modules downloaded"
log "downloading etcd dependencies (go mod download)..."
run_bg "etcd download" "$ETCD_MOD" "$WORK/etcd-list.err" '^go: downloading ' \
    "$WORK/etcd-pkgs" "$WORK/etcd-list.err" \
    go list -mod=mod -deps -f '{{.ImportPath}}' "$ETCD_PKG"
total="$(wc -l <"$WORK/etcd-pkgs" | tr -d ' ')"

COUNT_WHAT="of $total packages compiled"
log "building etcd $ETCD_VERSION (a few minutes)..."
run_bg "etcd build" "$ETCD_MOD" "$WORK/etcd-build.err" '^[^ #]' \
    /dev/null "$WORK/etcd-build.err" \
    go build -mod=mod -v -trimpath -ldflags "-s -w" -o "$WORK/out/etcd" "$ETCD_PKG"

# --- publish atomically -----------------------------------------------------
versions_ok "$WORK/out" || die "freshly built binaries failed the version check"
rm -rf "$DEST"
mv "$WORK/out" "$DEST"
log "cached in $DEST"
printf '%s\n' "$DEST"

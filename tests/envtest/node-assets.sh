#!/usr/bin/env bash
# Provide what the real-node tests (tests/node/) need besides the control plane
# of assets.sh:
#
#   kubelet          built from Go modules (k8s.io/kubernetes/cmd/kubelet)
#   pause            the pod sandbox's process: a tiny static Go program that
#                    sleeps until SIGTERM/SIGINT and reaps zombies
#   worker-base.tar  the base layer of the worker images, and the base image of
#                    the Dockerfile test: a Debian minbase rootfs with python3
#                    and python3-venv, made by debootstrap
#   VERSIONS         what was built, one `name value` per line
#
# containerd and runc are not built: Debian's packages are used
# (`apt-get install containerd runc`; .ci/run does it). containerd 1.6 has no
# RuntimeConfig CRI call, so the kubelet falls back to its own cgroupDriver;
# kubelet v1.37 still does that (it counts kubelet_cri_losing_support{version=
# "1.38.0"}); the fallback is slated for removal (kubernetes#136846) but is
# still in v1.38.0-beta.0. A newer kubelet than the apiserver is refused anyway.
#
# Each part is cached per version under the cache root; the directory holding
# all of them (as symlinks) is printed as the LAST line on stdout, progress goes
# to stderr:
#
#   HEARTBEAT_NODE_ASSETS="$(tests/envtest/node-assets.sh | tail -n 1)"
#
# Environment:
#   HEARTBEAT_NODE_ASSETS      a directory already laid out as above; used as-is
#   HEARTBEAT_KUBELET_VERSION  kubelet release (default below); must be no newer
#                              than the apiserver and at most 3 minors older
#   HEARTBEAT_K8S_VERSION      the apiserver's release (default: assets.sh's default)
#   HEARTBEAT_DEBIAN_MIRROR    debootstrap mirror (default: the Debian URI of
#                              this machine's apt sources, else deb.debian.org)
#   HEARTBEAT_NODE_CACHE       cache root
#                              (default ${XDG_CACHE_HOME:-$HOME/.cache}/heartbeat-webhook/node)
#   HEARTBEAT_GOTOOLCHAIN      toolchain used only if the local go is older than
#                              the kubernetes go.mod requires (default go1.27.3)
#
# Measured on 2 busy cores: kubelet 6m47s with an empty build cache (2m with
# the one assets.sh's kube-apiserver build leaves), debootstrap ~1 min, pause a
# few seconds; later runs only check the cache. The kubelet builds with
# CGO_ENABLED=0 (upstream links it dynamically; nothing in it needs cgo).
# debootstrap needs root.
set -euo pipefail

readonly DEFAULT_KUBELET_VERSION=v1.37.2
# The apiserver's default version is assets.sh's, read from it so they never drift.
DEFAULT_K8S_VERSION="$(sed -n 's/^readonly DEFAULT_K8S_VERSION=//p' "$(dirname "$0")/assets.sh")"
readonly DEFAULT_K8S_VERSION="${DEFAULT_K8S_VERSION:-v1.37.2}"
readonly DEBIAN_SUITE=bookworm
# python3-venv: the same rootfs is the local BASE_IMAGE for the Dockerfile
# (tests/node/test_image.py), whose build runs `python3 -m venv`.
readonly DEBIAN_PACKAGES=python3,python3-venv

LOG_PREFIX=node-assets
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

complete() {
    local dir="$1"
    [[ -n "$dir" && -x "$dir/kubelet" && -x "$dir/pause" && -s "$dir/worker-base.tar" ]]
}

# ---------------------------------------------------------------------------
# 1. HEARTBEAT_NODE_ASSETS
if [[ -n "${HEARTBEAT_NODE_ASSETS:-}" ]]; then
    if complete "$HEARTBEAT_NODE_ASSETS"; then
        log "using HEARTBEAT_NODE_ASSETS=$HEARTBEAT_NODE_ASSETS"
        printf '%s\n' "$HEARTBEAT_NODE_ASSETS"
        exit 0
    fi
    log "HEARTBEAT_NODE_ASSETS=$HEARTBEAT_NODE_ASSETS lacks kubelet, pause or worker-base.tar; ignoring it"
fi

KUBELET_VERSION="$(vprefix "${HEARTBEAT_KUBELET_VERSION:-$DEFAULT_KUBELET_VERSION}")"
APISERVER_VERSION="$(vprefix "${HEARTBEAT_K8S_VERSION:-$DEFAULT_K8S_VERSION}")"
[[ "$APISERVER_VERSION" =~ ^v1\.([0-9]+)\. ]] || die "HEARTBEAT_K8S_VERSION=$APISERVER_VERSION is not v1.N.P"
readonly APISERVER_MINOR="${BASH_REMATCH[1]}"
[[ "$KUBELET_VERSION" =~ ^v1\.([0-9]+)\.([0-9]+)(-[0-9A-Za-z.-]+)?$ ]] ||
    die "HEARTBEAT_KUBELET_VERSION=$KUBELET_VERSION is not a v1.N.P kubernetes version"
readonly KUBELET_MINOR="${BASH_REMATCH[1]}"
# Version skew policy: the kubelet may be up to 3 minors older than the
# apiserver, never newer.
if ((KUBELET_MINOR > APISERVER_MINOR)); then
    die "kubelet $KUBELET_VERSION is newer than kube-apiserver $APISERVER_VERSION (unsupported skew)"
fi
if ((APISERVER_MINOR - KUBELET_MINOR > 3)); then
    die "kubelet $KUBELET_VERSION is more than 3 minors older than kube-apiserver $APISERVER_VERSION"
fi
readonly STAGING_VERSION="v0.${KUBELET_VERSION#v1.}"

CACHE_ROOT="${HEARTBEAT_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/heartbeat-webhook/node}"
readonly KUBELET_DIR="$CACHE_ROOT/kubelet-${KUBELET_VERSION#v}"

# The pause program. Its source is part of the cache key.
read -r -d '' PAUSE_SOURCE <<'EOF' || true
// pause: the pod sandbox's process. Sleeps until SIGINT or SIGTERM and reaps
// any zombie it inherits (it is PID 1 of the pod when the PID namespace is shared).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
EOF
GO_VERSION="$(go env GOVERSION 2>/dev/null || echo none)"
PAUSE_KEY="$(printf '%s\n%s\n' "$GO_VERSION" "$PAUSE_SOURCE" | sha256sum | cut -c1-12)"
readonly PAUSE_DIR="$CACHE_ROOT/pause-$PAUSE_KEY"

debian_mirror() {
    if [[ -n "${HEARTBEAT_DEBIAN_MIRROR:-}" ]]; then
        printf '%s\n' "$HEARTBEAT_DEBIAN_MIRROR"
        return
    fi
    local uri
    # deb822 sources (URIs: ...) first, then one-line sources (deb URI suite ...).
    uri="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }')"
    if [[ -z "$uri" ]]; then
        uri="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:.*\/debian\/?$/) { print $i; exit } }')"
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}
ROOTFS_KEY="$DEBIAN_SUITE-$(printf '%s\n' "$DEBIAN_PACKAGES" | tr ' ,' '_' | cut -c1-40)"
readonly ROOTFS_KEY
readonly ROOTFS_DIR="$CACHE_ROOT/rootfs-$ROOTFS_KEY"
readonly DEST="$CACHE_ROOT/node-${KUBELET_VERSION#v}"

kubelet_ok() {
    local out
    [[ -x "$1/kubelet" ]] || return 1
    out="$("$1/kubelet" --version 2>/dev/null)" || return 1
    [[ "$out" == "Kubernetes $KUBELET_VERSION" ]] || {
        log "$1/kubelet reports '$out', expected 'Kubernetes $KUBELET_VERSION'"
        return 1
    }
}
pause_ok() { [[ -x "$1/pause" ]]; }
rootfs_ok() { [[ -s "$1/worker-base.tar" && -s "$1/python-version" ]]; }

publish() {
    mkdir -p "$DEST"
    ln -sfn "$KUBELET_DIR/kubelet" "$DEST/kubelet"
    ln -sfn "$PAUSE_DIR/pause" "$DEST/pause"
    ln -sfn "$ROOTFS_DIR/worker-base.tar" "$DEST/worker-base.tar"
    {
        printf 'kubelet %s\n' "$KUBELET_VERSION"
        printf 'kubelet-cgo %s\n' "$(cat "$KUBELET_DIR/cgo" 2>/dev/null || echo unknown)"
        printf 'pause %s\n' "$PAUSE_KEY"
        printf 'worker-base debian-%s %s %s\n' "$DEBIAN_SUITE" "$DEBIAN_PACKAGES" \
            "$(cat "$ROOTFS_DIR/python-version")"
    } >"$DEST/VERSIONS.tmp"
    mv "$DEST/VERSIONS.tmp" "$DEST/VERSIONS"
}

if kubelet_ok "$KUBELET_DIR" && pause_ok "$PAUSE_DIR" && rootfs_ok "$ROOTFS_DIR"; then
    publish
    log "using cached $DEST"
    printf '%s\n' "$DEST"
    exit 0
fi

command -v go >/dev/null || die "go is required to build the kubelet and pause (or set HEARTBEAT_NODE_ASSETS)"

lock_cache "$CACHE_ROOT"

WORK="$(mktemp -d "$CACHE_ROOT/.work.XXXXXX")"
cd "$WORK"
cleanup() {
    stop_bg
    # debootstrap mounts /proc and /sys in its target; never leave them behind.
    local m
    if command -v findmnt >/dev/null; then
        while read -r m; do
            umount -l "$m" 2>/dev/null || true
        done < <(findmnt -rn -o TARGET | grep -F "$WORK/" | sort -r)
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export GOWORK=off

# ---------------------------------------------------------------------------
# kubelet
build_kubelet() {
    local out json gomod k8s_go local_go mod_json build_date ldflags pkg total
    log "building kubelet $KUBELET_VERSION into $KUBELET_DIR"
    log "resolving module metadata (go mod download)..."
    if ! json="$(go mod download -json "k8s.io/kubernetes@$KUBELET_VERSION")"; then
        log "$(json_field Error <<<"$json")"
        die "go mod download k8s.io/kubernetes@$KUBELET_VERSION failed (is it published on \$GOPROXY?)"
    fi
    gomod="$(json_field GoMod <<<"$json")"
    [[ -f "$gomod" ]] || die "could not locate the downloaded go.mod"

    local_go="$(go env GOVERSION)"
    local_go="${local_go#go}"
    mod_json="$(go mod edit -json "$gomod")"
    k8s_go="$(json_field Go <<<"$mod_json")"
    if version_lt "$local_go" "$k8s_go"; then
        export GOTOOLCHAIN="${HEARTBEAT_GOTOOLCHAIN:-go1.27.3}"
        log "go $local_go is older than required go $k8s_go; using GOTOOLCHAIN=$GOTOOLCHAIN"
    fi

    # Staging modules: every k8s.io/* the release's go.mod requires at v0.0.0
    # (replaced by ./staging/src/... there, which does not apply to a
    # dependency), derived from that go.mod rather than hard-coded; plus its
    # godebug settings.
    local -a staging godebug edit_args
    mapfile -t staging < <(awk '
        /^\t"[A-Za-z]+": / { section = $1; gsub(/[":]/, "", section) }
        section == "Require" && $1 == "\"Path\":" { p = $2; gsub(/[",]/, "", p) }
        section == "Require" && $1 == "\"Version\":" {
            v = $2; gsub(/[",]/, "", v)
            if (p ~ /^k8s\.io\// && v == "v0.0.0") print p
        }' <<<"$mod_json")
    ((${#staging[@]} > 0)) || die "found no k8s.io/* v0.0.0 requirements in $gomod"
    mapfile -t godebug < <(awk '
        /^\t"[A-Za-z]+": / { section = $1; gsub(/[":]/, "", section) }
        section == "GoDebug" && $1 == "\"Key\":" { k = $2; gsub(/[",]/, "", k) }
        section == "GoDebug" && $1 == "\"Value\":" { v = $2; gsub(/[",]/, "", v); print k "=" v }
        ' <<<"$mod_json")

    local mod="$WORK/kubelet"
    mkdir -p "$mod" "$WORK/kubelet-out"
    edit_args=(-go="$k8s_go" -require="k8s.io/kubernetes@$KUBELET_VERSION")
    for m in "${staging[@]}"; do edit_args+=(-replace="$m=$m@$STAGING_VERSION"); done
    for g in "${godebug[@]}"; do edit_args+=(-godebug="$g"); done
    printf 'module heartbeat-webhook.invalid/envtest/kubelet\n' >"$mod/go.mod"
    (cd "$mod" && go mod edit "${edit_args[@]}")
    log "kubelet wrapper: k8s.io/kubernetes $KUBELET_VERSION, ${#staging[@]} staging modules replaced at $STAGING_VERSION"

    # Version stamping as hack/lib/version.sh does (gitCommit is not on the proxy).
    build_date="$(go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' \
        "k8s.io/kubernetes@$KUBELET_VERSION" 2>/dev/null || true)"
    [[ -n "$build_date" ]] || build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=$KUBELET_VERSION"
        ldflags+=" -X $pkg.gitMajor=1 -X $pkg.gitMinor=$KUBELET_MINOR"
        ldflags+=" -X $pkg.gitCommit= -X $pkg.gitTreeState=clean"
        ldflags+=" -X $pkg.buildDate=$build_date"
    done

    pkg=k8s.io/kubernetes/cmd/kubelet
    local tags=selinux,notest,grpcnotrace # upstream release build tags (hack/lib/golang.sh)

    COUNT_WHAT="modules downloaded"
    log "downloading kubelet dependencies..."
    run_bg "kubelet download" "$mod" "$WORK/kubelet-list.err" '^go: downloading ' \
        "$WORK/kubelet-pkgs" "$WORK/kubelet-list.err" \
        env CGO_ENABLED=0 go list -mod=mod -tags "$tags" -deps -f '{{.ImportPath}}' "$pkg"
    total="$(wc -l <"$WORK/kubelet-pkgs" | tr -d ' ')"

    # Upstream links the kubelet dynamically (it is not in KUBE_STATIC_BINARIES),
    # but nothing it imports needs cgo: a static build runs on any host and
    # inside any test image. Fall back to cgo only if the static build fails.
    COUNT_WHAT="of $total packages compiled"
    log "building kubelet $KUBELET_VERSION with CGO_ENABLED=0 (first run takes 5-15 min)..."
    local cgo=0
    if ! run_bg "kubelet build" "$mod" "$WORK/kubelet-build.err" '^[^ #]' \
        /dev/null "$WORK/kubelet-build.err" \
        env CGO_ENABLED=0 go build -mod=mod -v -trimpath -tags "$tags" -ldflags "$ldflags" \
        -o "$WORK/kubelet-out/kubelet" "$pkg"; then
        log "static kubelet build failed; retrying with CGO_ENABLED=1 as upstream builds it"
        cgo=1
        run_bg "kubelet build (cgo)" "$mod" "$WORK/kubelet-build.err" '^[^ #]' \
            /dev/null "$WORK/kubelet-build.err" \
            env CGO_ENABLED=1 go build -mod=mod -v -trimpath -tags "$tags" -ldflags "$ldflags" \
            -o "$WORK/kubelet-out/kubelet" "$pkg"
    fi
    printf '%s\n' "$cgo" >"$WORK/kubelet-out/cgo"
    kubelet_ok "$WORK/kubelet-out" || die "the freshly built kubelet failed the version check"
    rm -rf "$KUBELET_DIR"
    mv "$WORK/kubelet-out" "$KUBELET_DIR"
    log "cached $KUBELET_DIR"
}

# ---------------------------------------------------------------------------
# pause
build_pause() {
    local mod="$WORK/pause"
    mkdir -p "$mod" "$WORK/pause-out"
    printf '%s\n' "$PAUSE_SOURCE" >"$mod/main.go"
    printf 'module heartbeat-webhook.invalid/node/pause\n\ngo 1.22\n' >"$mod/go.mod"
    log "building pause (static Go program)..."
    (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$WORK/pause-out/pause" .) ||
        die "building pause failed"
    rm -rf "$PAUSE_DIR"
    mv "$WORK/pause-out" "$PAUSE_DIR"
    log "cached $PAUSE_DIR"
}

# ---------------------------------------------------------------------------
# worker base layer: debootstrap minbase + python3, python3-venv
build_rootfs() {
    local mirror target="$WORK/rootfs" start=$SECONDS
    command -v debootstrap >/dev/null || die "debootstrap is required for the worker image (apt-get install debootstrap)"
    ((EUID == 0)) || die "debootstrap needs root"
    mirror="$(debian_mirror)"
    log "debootstrap --variant=minbase --include=$DEBIAN_PACKAGES $DEBIAN_SUITE from $mirror (1-3 min)..."
    mkdir -p "$WORK/rootfs-out"
    COUNT_WHAT="debootstrap steps"
    run_bg "debootstrap" "$WORK" "$WORK/debootstrap.out" '^I: ' \
        "$WORK/debootstrap.out" "$WORK/debootstrap.log" \
        debootstrap --variant=minbase --include="$DEBIAN_PACKAGES" "$DEBIAN_SUITE" "$target" "$mirror"
    chroot "$target" python3 -c 'import argparse, ensurepip, re, runpy, tempfile, threading, venv' ||
        die "python3 in the rootfs lacks modules the worker needs"
    chroot "$target" python3 -c 'import sys; print("python%d.%d.%d" % sys.version_info[:3])' \
        >"$WORK/rootfs-out/python-version"
    # A lean, reproducible layer: no package caches or lists, no device nodes
    # (the runtime mounts /dev), owners as numbers, sorted, fixed mtimes.
    rm -rf "${target:?}"/var/cache/apt/* "${target:?}"/var/lib/apt/lists/* "${target:?}"/var/log/* \
        "${target:?}"/usr/share/doc/* "${target:?}"/usr/share/man/* "${target:?}"/usr/share/locale/* \
        "${target:?}"/tmp/* "${target:?}"/dev/*
    tar --numeric-owner --sort=name --mtime=@0 --xattrs -C "$target" -cf "$WORK/rootfs-out/worker-base.tar" .
    rm -rf "$ROOTFS_DIR"
    mv "$WORK/rootfs-out" "$ROOTFS_DIR"
    log "cached $ROOTFS_DIR ($(du -sh "$ROOTFS_DIR/worker-base.tar" | cut -f1), $(fmt_secs $((SECONDS - start))))"
}

pause_ok "$PAUSE_DIR" || build_pause
rootfs_ok "$ROOTFS_DIR" || build_rootfs
kubelet_ok "$KUBELET_DIR" || build_kubelet

publish
log "node assets in $DEST"
printf '%s\n' "$DEST"

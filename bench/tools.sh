#!/usr/bin/env bash
# Provide vegeta (the open-loop load generator of `make bench`), built from the
# Go module proxy into a per-version cache directory outside the repository:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/heartbeat-webhook/tools/vegeta-<version>/vegeta
#
# The path of the binary is printed as the last line on stdout; progress goes to
# stderr. About 40 s on 2 cores with empty Go caches, instant afterwards.
#
# Environment:
#   VEGETA                    an existing vegeta binary; used as-is
#   HEARTBEAT_VEGETA_VERSION  default below (v12.13.0 is the newest v12 tag)
#   HEARTBEAT_TOOLS_CACHE     cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/heartbeat-webhook/tools)
set -euo pipefail

readonly DEFAULT_VEGETA_VERSION=v12.13.0

log() { printf 'bench-tools: %s\n' "$*" >&2; }

if [[ -n "${VEGETA:-}" ]]; then
    [[ -x "$VEGETA" ]] || { log "VEGETA=$VEGETA is not executable"; exit 1; }
    printf '%s\n' "$VEGETA"
    exit 0
fi

version="${HEARTBEAT_VEGETA_VERSION:-$DEFAULT_VEGETA_VERSION}"
version="v${version#v}"
root="${HEARTBEAT_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/heartbeat-webhook/tools}"
dest="$root/vegeta-${version#v}"
if [[ -x "$dest/vegeta" ]]; then
    printf '%s\n' "$dest/vegeta"
    exit 0
fi
command -v go >/dev/null || { log "go is required to build vegeta (or set VEGETA)"; exit 1; }

mkdir -p "$root"
work="$(mktemp -d "$root/.vegeta.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "building github.com/tsenart/vegeta/v12@$version into $dest (go install)..."
# Outside any module, so the repository's (absent) go.mod or a go.work never applies.
(cd "$work" && GOWORK=off GOBIN="$work/bin" go install "github.com/tsenart/vegeta/v12@$version") >&2
mkdir -p "$dest"
mv "$work/bin/vegeta" "$dest/vegeta.tmp"
mv "$dest/vegeta.tmp" "$dest/vegeta"
log "built $dest/vegeta"
printf '%s\n' "$dest/vegeta"

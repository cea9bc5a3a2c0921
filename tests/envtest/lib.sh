# shellcheck shell=bash
# Helpers shared by assets.sh, node-assets.sh and tools.sh. Sourced, not run.
#
# The sourcing script sets LOG_PREFIX (its name in progress lines) first, and
# COUNT_WHAT (what run_bg's progress lines count) before calling run_bg.

: "${LOG_PREFIX:?set LOG_PREFIX before sourcing lib.sh}"
# Seconds between run_bg's progress lines.
HEARTBEAT_INTERVAL="${HEARTBEAT_INTERVAL:-30}"
BG_PID=""

log() { printf '%s: %s\n' "$LOG_PREFIX" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# Normalise "1.2.3" / "v1.2.3" to "v1.2.3".
vprefix() { printf 'v%s' "${1#v}"; }

fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# Extract a string field from `go mod download -json` (or `go mod edit -json`) output.
json_field() { sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" | head -n 1; }

# version_lt A B: true if go version A < B (versions without the "go" prefix).
version_lt() { [[ "$1" != "$2" && "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" == "$1" ]]; }

# run_bg LABEL DIR COUNT_FILE COUNT_REGEX OUT ERR CMD...
# Runs CMD in DIR in the background (stdout>OUT, stderr>ERR) and prints a
# progress line with the elapsed time and the number of lines matching
# COUNT_REGEX in COUNT_FILE every $HEARTBEAT_INTERVAL seconds. On failure it
# prints the end of OUT (debootstrap reports there) and of ERR, and returns the
# command's exit status.
run_bg() {
    local label="$1" dir="$2" count_file="$3" count_re="$4" out="$5" err="$6"
    shift 6
    local start=$SECONDS next=$((SECONDS + HEARTBEAT_INTERVAL)) n rc=0
    (cd "$dir" && exec "$@") >"$out" 2>"$err" &
    BG_PID=$!
    while kill -0 "$BG_PID" 2>/dev/null; do
        sleep 1
        if ((SECONDS >= next)); then
            n="$(grep -cE "$count_re" "$count_file" 2>/dev/null || true)"
            log "  ... $label: $(fmt_secs $((SECONDS - start))) elapsed, ${n:-0} ${COUNT_WHAT:-lines}"
            next=$((SECONDS + HEARTBEAT_INTERVAL))
        fi
    done
    wait "$BG_PID" || rc=$?
    BG_PID=""
    if ((rc != 0)); then
        log "$label failed (exit $rc) after $(fmt_secs $((SECONDS - start))); last output:"
        if [[ -f "$out" ]]; then tail -n 20 "$out" >&2; fi
        tail -n 40 "$err" >&2
        return "$rc"
    fi
    log "  $label done in $(fmt_secs $((SECONDS - start)))"
}

# lock_cache DIR: create DIR and hold its build lock on fd 9 until exit, waiting
# while another run holds it.
lock_cache() {
    command -v flock >/dev/null || die "flock (util-linux) is required"
    mkdir -p "$1"
    exec 9>"$1/.lock"
    if ! flock -n 9; then
        log "another run is building into $1; waiting for its lock..."
        flock 9
    fi
}

# Stop run_bg's command if it is still running (for the scripts' EXIT traps).
stop_bg() {
    if [[ -n "$BG_PID" ]] && kill -0 "$BG_PID" 2>/dev/null; then
        kill "$BG_PID" 2>/dev/null || true
        wait "$BG_PID" 2>/dev/null || true
    fi
}

# Shared helpers for interop scenarios. Sourced by every scenarios/NN-*.sh.
#
# run.sh exports:
#   INTEROP_DIR   tests/interop
#   REPO_ROOT     the repository root
#   WORKDIR       a fresh temp dir for this scenario (cwd at start)
#   SPIRE_BIN     dir holding spire-server / spire-agent   (default tests/interop/bin)
#   SIGNET_BIN    dir holding signet-server / signet-agent (default target/debug)
#   SERVER_IMPL   "signet" (default) or "spire": which server the scenario drives. "spire" runs the
#                 same assertions against the real SPIRE server, to prove the scenario itself is right.
# shellcheck shell=bash

set -euo pipefail

: "${INTEROP_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${REPO_ROOT:=$(cd "$INTEROP_DIR/../.." && pwd)}"
: "${WORKDIR:=$(mktemp -d)}"
: "${SPIRE_BIN:=$INTEROP_DIR/bin}"
: "${SIGNET_BIN:=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug}"
: "${SERVER_IMPL:=signet}"

SPIRE_SERVER="$SPIRE_BIN/spire-server"
SPIRE_AGENT="$SPIRE_BIN/spire-agent"
SIGNET_SERVER="$SIGNET_BIN/signet-server"
SIGNET_AGENT="$SIGNET_BIN/signet-agent"
PYHELP="$INTEROP_DIR/lib/interop.py"
LOGDIR="$WORKDIR/logs"
OUT="$WORKDIR/out"         # captured stdout/stderr of CLI calls
mkdir -p "$LOGDIR" "$OUT"

# --- logging / assertions ----------------------------------------------------------------------

_step_no=0
step() { _step_no=$((_step_no + 1)); printf '\n=== step %d (t+%ds): %s\n' "$_step_no" "$SECONDS" "$*"; }
info() { printf -- '--- %s\n' "$*"; }

fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

assert_eq() { # assert_eq <what> <expected> <actual>
    if [[ "$2" != "$3" ]]; then
        fail "$1: expected [$2], got [$3]"
    fi
    info "ok: $1 = [$3]"
}

assert_ne() { # assert_ne <what> <unexpected> <actual>
    [[ "$2" != "$3" ]] || fail "$1: did not expect [$3]"
    info "ok: $1 != [$2]"
}

assert_match() { # assert_match <what> <ERE> <actual>
    [[ "$3" =~ $2 ]] || fail "$1: [$3] does not match /$2/"
    info "ok: $1 [$3] matches /$2/"
}

assert_file_contains() { # assert_file_contains <what> <fixed string> <file>
    grep -qF -- "$2" "$3" || { cat "$3" >&2; fail "$1: [$2] not found in $3"; }
    info "ok: $1 contains [$2]"
}

assert_same_lines() { # assert_same_lines <what> <file a> <file b>  (order-insensitive)
    if ! diff <(sort "$2") <(sort "$3") >"$OUT/diff.txt"; then
        printf '%s\n' "--- $2" >&2; cat "$2" >&2
        printf '%s\n' "--- $3" >&2; cat "$3" >&2
        fail "$1: outputs differ: $(cat "$OUT/diff.txt")"
    fi
    info "ok: $1 ($(wc -l <"$2") line(s) agree)"
}

# --- running commands --------------------------------------------------------------------------

# run_cli <name> <cmd...>: runs a command, saving stdout to $OUT/<name>.out and stderr to
# $OUT/<name>.err, echoing both into the scenario log. Sets CLI_RC; never fails by itself.
run_cli() {
    local name="$1"; shift
    printf '$ %s\n' "$*"
    set +e
    "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" </dev/null
    CLI_RC=$?
    set -e
    sed 's/^/  | /' "$OUT/$name.out"
    sed 's/^/  ! /' "$OUT/$name.err"
    printf '  (exit %d)\n' "$CLI_RC"
}

# must <name> <cmd...>: run_cli, failing the scenario if the command exits non-zero.
must() {
    local name="$1"
    run_cli "$@"
    [[ $CLI_RC -eq 0 ]] || fail "command [$name] exited $CLI_RC: $(head -c 2000 "$OUT/$name.err")"
}

# must_fail <name> <cmd...>: run_cli, failing the scenario if the command succeeds.
must_fail() {
    local name="$1"
    run_cli "$@"
    [[ $CLI_RC -ne 0 ]] || fail "command [$name] unexpectedly succeeded"
}

py() { python3 "$PYHELP" "$@"; }

# --- processes ---------------------------------------------------------------------------------

_pids=()
_names=()

# start_bg <name> <cmd...>: start a long-running process, logging to $LOGDIR/<name>.log.
start_bg() {
    local name="$1"; shift
    printf '$ %s &   (log: %s)\n' "$*" "$LOGDIR/$name.log"
    "$@" >"$LOGDIR/$name.log" 2>&1 </dev/null &
    local pid=$!
    _pids+=("$pid")
    _names+=("$name")
    echo "$pid" >>"$WORKDIR/pids"
    eval "PID_${name//[^A-Za-z0-9_]/_}=$pid"
}

# stop_bg <name>: SIGTERM the named process, SIGKILL after 5s.
stop_bg() {
    local name="$1" i
    for i in "${!_names[@]}"; do
        [[ "${_names[$i]}" == "$name" ]] || continue
        _stop_pid "${_pids[$i]}" 2>/dev/null
        unset '_pids[i]' '_names[i]'
        return 0
    done
}

_stop_pid() {
    local pid="$1" n
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for n in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

is_running() { # is_running <name>
    local i
    for i in "${!_names[@]}"; do
        [[ "${_names[$i]}" == "$1" ]] && kill -0 "${_pids[$i]}" 2>/dev/null && return 0
    done
    return 1
}

_cleanup() {
    local rc=$?
    local i
    for i in "${!_pids[@]}"; do _stop_pid "${_pids[$i]}" 2>/dev/null; done
    if [[ $rc -ne 0 ]]; then
        for f in "$LOGDIR"/*.log; do
            [[ -e "$f" ]] || continue
            printf '\n----- last 60 lines of %s -----\n' "$f"
            tail -n 60 "$f"
        done
    fi
    exit "$rc"
}
trap _cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# wait_for <what> <timeout seconds> <command...>: poll until the command succeeds.
wait_for() {
    local what="$1" timeout="$2"; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then fail "timed out after ${timeout}s waiting for $what"; fi
        sleep 0.2
    done
    info "ok: $what"
}

# until_true <what> <seconds> <cmd...>: polls every 0.5 s; prints how long it took.
until_true() {
    local what="$1" limit="$2"; shift 2
    local start=$SECONDS deadline=$((SECONDS + limit))
    until "$@"; do
        ((SECONDS < deadline)) || fail "$what: not within ${limit}s"
        sleep 0.5
    done
    info "ok: $what after ~$((SECONDS - start))s"
}

# aki_of <pem file>: hex AKI of the first certificate.
aki_of() {
    openssl x509 -in "$1" -noout -ext authorityKeyIdentifier | tail -n +2 | head -n 1 |
        sed 's/keyid://' | tr -d ' :' | tr 'A-F' 'a-f'
}

# wait_for_socket <proc name> <socket path> [timeout]: wait for a UDS, failing early if the process died.
wait_for_socket() {
    local name="$1" sock="$2" timeout="${3:-60}"
    local deadline=$((SECONDS + timeout))
    until [[ -S "$sock" ]]; do
        is_running "$name" || fail "$name exited before creating $sock"
        ((SECONDS < deadline)) || fail "timed out after ${timeout}s waiting for $sock"
        sleep 0.2
    done
    info "ok: $name listening on $sock"
}

# wait_for_log <proc name> <fixed string> [timeout]
wait_for_log() {
    local name="$1" text="$2" timeout="${3:-60}"
    local deadline=$((SECONDS + timeout))
    until grep -qF -- "$text" "$LOGDIR/$name.log" 2>/dev/null; do
        is_running "$name" || fail "$name exited before logging [$text]"
        ((SECONDS < deadline)) || fail "timed out after ${timeout}s waiting for [$text] in $name's log"
        sleep 0.2
    done
    info "ok: $name logged [$text]"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

require_bin() {
    local b
    for b in "$@"; do
        [[ -x "$b" ]] || fail "missing binary $b (run tests/interop/build.sh)"
    done
}

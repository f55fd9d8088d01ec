#!/usr/bin/env bash
# Runs the interop scenarios (tests/interop/scenarios/NN-*.sh) in order, each in a fresh temp dir
# and its own process group, with a timeout. Ends with the line "N passed, M failed".
#
# Usage: tests/interop/run.sh [FILTER...]     FILTER = substring of a scenario file name
# Environment:
#   INTEROP_TIMEOUT=300    per-scenario timeout, seconds
#   INTEROP_KEEP=1         keep every scenario's temp dir (failed ones are always kept)
#   INTEROP_VERBOSE=1      print each scenario's full log, not only failures
#   SERVER_IMPL=spire      run the scenarios against the real SPIRE server (checks the scenarios)
#   SPIRE_BIN, SIGNET_BIN  where the binaries are (default tests/interop/bin, target/debug)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export INTEROP_DIR="$here"
export REPO_ROOT="${REPO_ROOT:-$(cd "$here/../.." && pwd)}"
export SPIRE_BIN="${SPIRE_BIN:-$here/bin}"
export SIGNET_BIN="${SIGNET_BIN:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug}"
export SERVER_IMPL="${SERVER_IMPL:-signet}"
timeout_s="${INTEROP_TIMEOUT:-300}"
[[ -n "${CI:-}" ]] && export INTEROP_VERBOSE="${INTEROP_VERBOSE:-1}"

scenarios=()
for f in "$here"/scenarios/[0-9][0-9]-*.sh; do
    [[ -e "$f" ]] || continue
    name="$(basename "$f" .sh)"
    if [[ $# -gt 0 ]]; then
        keep=0
        for pat in "$@"; do [[ "$name" == *"$pat"* ]] && keep=1; done
        [[ $keep -eq 1 ]] || continue
    fi
    scenarios+=("$f")
done

passed=0
failed=0
failed_names=()
current_pgid=""

# Kill what a scenario left behind: its whole process group, plus any pid it recorded.
reap() {
    local pgid="$1" workdir="$2" sig pids
    for sig in TERM KILL; do
        pids="$(pgrep -g "$pgid" 2>/dev/null || true)"
        if [[ -f "$workdir/pids" ]]; then
            local p
            # (if, not &&: under set -e a loop whose last test failed would end run.sh)
            while read -r p; do
                if kill -0 "$p" 2>/dev/null; then pids+=" $p"; fi
            done <"$workdir/pids"
        fi
        [[ -n "${pids// /}" ]] || return 0
        # shellcheck disable=SC2086
        kill -"$sig" $pids 2>/dev/null || true
        if [[ $sig == TERM ]]; then sleep 2; fi
    done
    return 0
}

on_signal() {
    echo "run.sh: interrupted" >&2
    [[ -n "$current_pgid" ]] && reap "$current_pgid" "${current_workdir:-/nonexistent}"
    echo "$passed passed, $((failed + 1)) failed"
    exit 130
}
trap on_signal INT TERM

echo "interop: ${#scenarios[@]} scenario(s), server under test: $SERVER_IMPL, timeout ${timeout_s}s each"
total_start=$SECONDS
for f in "${scenarios[@]}"; do
    name="$(basename "$f" .sh)"
    workdir="$(mktemp -d "${TMPDIR:-/tmp}/interop-$name.XXXXXX")"
    log="$workdir/scenario.log"
    current_workdir="$workdir"
    echo "--- RUN   $name  (dir $workdir)"
    start=$SECONDS
    # `timeout` puts itself and the scenario in a new process group and, on expiry, signals it all.
    (
        cd "$workdir"
        export WORKDIR="$workdir"
        exec timeout --kill-after=15 "$timeout_s" bash "$f" </dev/null
    ) >"$log" 2>&1 &
    pid=$!
    current_pgid="$pid"
    set +e
    wait "$pid"
    rc=$?
    set -e
    reap "$pid" "$workdir"
    current_pgid=""
    dur=$((SECONDS - start))
    if [[ $rc -eq 0 ]]; then
        passed=$((passed + 1))
        [[ "${INTEROP_VERBOSE:-}" == 1 ]] && sed 's/^/    /' "$log"
        echo "--- PASS  $name (${dur}s)"
        [[ "${INTEROP_KEEP:-}" == 1 ]] || rm -rf "$workdir"
    else
        failed=$((failed + 1))
        failed_names+=("$name")
        sed 's/^/    /' "$log"
        if [[ $rc -eq 124 || $rc -eq 137 ]]; then
            echo "--- FAIL  $name: timed out after ${timeout_s}s (logs kept in $workdir)"
        else
            echo "--- FAIL  $name: exit $rc after ${dur}s (logs kept in $workdir)"
        fi
    fi
done

echo "interop: finished in $((SECONDS - total_start))s"
[[ ${#failed_names[@]} -gt 0 ]] && echo "interop: failed: ${failed_names[*]}"
if [[ ${#scenarios[@]} -eq 0 ]]; then
    echo "interop: no scenarios matched" >&2
    failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]

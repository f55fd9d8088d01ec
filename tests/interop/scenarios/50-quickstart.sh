#!/usr/bin/env bash
# The repository's ./quickstart.sh with QUICKSTART_ONESHOT=1: it builds, starts signet-server and
# signet-agent, fetches the demo identity once and exits. Its output must show the SVID
# (spiffe://example.org/demo), it must exit 0, leave no signet process running, and write nothing
# in the repository outside .data/quickstart (nor in SPIRE's default /tmp socket dirs).
# Signet only: with SERVER_IMPL=spire there is nothing to check and the scenario is skipped.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

QS="$REPO_ROOT/quickstart.sh"
QS_DATA="$REPO_ROOT/.data/quickstart"
if [[ "$SERVER_IMPL" != signet ]]; then
    info "skipped: quickstart.sh runs Signet only (SERVER_IMPL=$SERVER_IMPL)"
    echo PASS
    exit 0
fi
[[ -x "$QS" ]] || fail "missing $QS"

# Processes started from the quickstart's configs (they live under .data/quickstart).
qs_procs() { pgrep -af -- "$QS_DATA/" | grep -v -- "pgrep" || true; }

step "nothing else is using $QS_DATA"
if [[ -n "$(qs_procs)" ]]; then
    qs_procs | sed 's/^/  | /'
    fail "a quickstart is already running from $QS_DATA; stop it first (this scenario recreates that directory)"
fi
info "ok: no quickstart running"
marker="$WORKDIR/start-marker"
touch "$marker"
sleep 1 # so that files written afterwards are strictly -newer than the marker

step "QUICKSTART_ONESHOT=1 ./quickstart.sh"
t0=$SECONDS
set +e
(cd "$REPO_ROOT" && QUICKSTART_ONESHOT=1 ./quickstart.sh) >"$OUT/quickstart.out" 2>"$OUT/quickstart.err" </dev/null
rc=$?
set -e
sed 's/^/  | /' "$OUT/quickstart.out"
tail -n 20 "$OUT/quickstart.err" | sed 's/^/  ! /'
info "quickstart.sh exited $rc after $((SECONDS - t0))s"
if [[ $rc -ne 0 ]]; then
    for f in "$QS_DATA/server.log" "$QS_DATA/agent.log"; do
        [[ -f "$f" ]] && { printf '\n----- last 40 lines of %s -----\n' "$f"; tail -n 40 "$f"; }
    done
    fail "quickstart.sh exited $rc"
fi

step "the workload got its identity"
assert_file_contains "quickstart output" "SPIFFE ID:" "$OUT/quickstart.out"
assert_file_contains "quickstart output" "spiffe://example.org/demo" "$OUT/quickstart.out"
grep -E 'SPIFFE ID:[[:space:]]+spiffe://example.org/demo' "$OUT/quickstart.out" >/dev/null ||
    fail "no 'SPIFFE ID: spiffe://example.org/demo' line in the quickstart output"
info "ok: $(grep -m1 -E 'SPIFFE ID:' "$OUT/quickstart.out")"

step "no signet process is left running"
left="$(qs_procs)"
if [[ -n "$left" ]]; then
    printf '%s\n' "$left" | sed 's/^/  | /'
    # Not ours to leave behind: stop exactly these pids, then fail.
    # shellcheck disable=SC2046
    kill -TERM $(printf '%s\n' "$left" | awk '{ print $1 }') 2>/dev/null || true
    fail "quickstart.sh left signet processes running"
fi
info "ok: no process runs from $QS_DATA"
[[ ! -S "$QS_DATA/server/api.sock" ]] || info "note: server socket file left at $QS_DATA/server/api.sock"

step "nothing written outside .data/quickstart"
find "$REPO_ROOT" \
    \( -path "$REPO_ROOT/target" -o -path "$REPO_ROOT/.git" -o -path "$QS_DATA" \) -prune -o \
    -newer "$marker" ! -path "$REPO_ROOT" ! -path "$REPO_ROOT/.data" -print >"$OUT/new-files.txt" 2>/dev/null || true
for d in /tmp/spire-server /tmp/spire-agent; do
    [[ -e "$d" ]] && find "$d" -newer "$marker" -print >>"$OUT/new-files.txt" 2>/dev/null
done
if [[ -s "$OUT/new-files.txt" ]]; then
    sed 's/^/  | /' "$OUT/new-files.txt"
    fail "quickstart.sh wrote outside $QS_DATA (or files changed in the repository while it ran)"
fi
info "ok: only $QS_DATA changed"
[[ -f "$QS_DATA/server.log" && -f "$QS_DATA/agent.log" ]] || fail "server/agent logs missing from $QS_DATA"
echo PASS

#!/usr/bin/env bash
# `signet-agent api watch` as spiffe-helper: files for a program that knows nothing of SPIFFE,
# here `openssl s_server`, kept current through rotations of a short-TTL entry (SVID_TTL,
# default 6 s), the server reloaded by signal each time, and `openssl s_client` with the
# written bundle verifying every new leaf (verify return code 0, serial changed, URI SAN).
#
# s_server loads its certificate once and has no reload signal (SIGHUP ends it), so
# lib/s_server_reloader.sh wraps it: on SIGHUP it stops s_server and starts a new one, which
# reads the files again, and logs the serial it loaded.
#   A. config-file form (spiffe-helper's helper.conf keys): cmd = the wrapper, renew_signal =
#      "SIGHUP", spiffe-helper's three file names; also jwt_svids and jwt_bundle_file_name
#      (the token is checked with `api validate jwt`).
#   B. flags form: `--write DIR` (SPIRE's numbered files) with --pid-file-name: the wrapper is
#      started by this script and signalled through its PID file.
# Then: modes (key 0600, certificates 0644), no temporary files left, key matches leaf, and a
# bundle that does not hold the CA (a fresh self-signed certificate) fails verification.
# AGENT_IMPL=spire runs the same watch against spire-agent v1.13.3 (the control).
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
source "$INTEROP_DIR/lib/server.sh"
source "$INTEROP_DIR/lib/agent.sh"

require_bin "$SPIRE_SERVER" "$SIGNET_AGENT"
require_agent_impl
command -v openssl >/dev/null || fail "openssl is needed"
TD="spiffe://$TRUST_DOMAIN"
WL_ID="$TD/watch-files/uid-$(id -u)"
TTL="${SVID_TTL:-6}"
RELOADER="$INTEROP_DIR/lib/s_server_reloader.sh"

step "start the server under test ($SERVER_IMPL)"
write_server_conf "$WORKDIR/server"
start_server
own_cli bootstrap bundle show
cp "$OUT/bootstrap.out" "$WORKDIR/bootstrap.pem"

step "join token and an entry for uid $(id -u) gid $(id -g) with a ${TTL}s X509-SVID TTL"
own_cli token token generate
TOKEN="$(py token "$OUT/token.out")"
AGENT_ID="$TD/spire/agent/join_token/$TOKEN"
own_cli entry entry create --parent-id "$AGENT_ID" --spiffe-id "$WL_ID" \
    --selector "unix:uid:$(id -u)" --selector "unix:gid:$(id -g)" --x509-svid-ttl "$TTL"

step "start the agent under test ($AGENT_IMPL)"
write_agent_conf "$WORKDIR/agent" "$WORKDIR/bootstrap.pem"
start_agent agent "$TOKEN"
serves_workload() {
    "$SIGNET_AGENT" api fetch x509 --socket-path "$AGENT_SOCK" 2>/dev/null | grep -qF "$WL_ID"
}
wait_for "the agent to serve $WL_ID" 90 serves_workload

# serial_of <pem file>: the serial of its first certificate.
serial_of() { openssl x509 -in "$1" -noout -serial | sed 's/^serial=//'; }

# verify_reloads <label> <bundle file> <port> <reload log> <leaves> [first line checked]:
# waits for s_server restarts (lines in the reload log) and after each connects with s_client
# and the bundle, until <leaves> different leaves were served, each verified (return code 0),
# each one that s_server loaded from the files, each with the workload's URI SAN. Then no two
# consecutive loads from line [first line checked] (default 1) on may hold the same leaf.
verify_reloads() {
    local label="$1" bundle="$2" port="$3" rlog="$4" want="$5" from="${6:-1}"
    local deadline=$((SECONDS + TTL * (want + 2) + 40)) done_lines=0 n got try ok
    local served=()
    while ((${#served[@]} < want)); do
        ((SECONDS < deadline)) || fail "$label: only ${#served[@]} of $want leaves served and verified in time"
        n="$(wc -l <"$rlog" 2>/dev/null || echo 0)"
        if ((n <= done_lines)); then sleep 0.2; continue; fi
        done_lines=$n
        ok=0
        for try in $(seq 50); do
            if openssl s_client -connect "127.0.0.1:$port" -CAfile "$bundle" -verify_return_error \
                </dev/null >"$OUT/$label-client.out" 2>"$OUT/$label-client.err"; then
                ok=1
                break
            fi
            sleep 0.1
        done
        ((ok)) || fail "$label: no verified handshake after reload #$n: $(tail -c 800 "$OUT/$label-client.err")"
        grep -qF "Verify return code: 0 (ok)" "$OUT/$label-client.out" ||
            fail "$label: s_client did not report verify return code 0"
        got="$(serial_of "$OUT/$label-client.out")"
        grep -qE " $got\$" "$rlog" || fail "$label: served serial $got is not one s_server loaded from the files"
        openssl x509 -in "$OUT/$label-client.out" -noout -ext subjectAltName >"$OUT/$label-san.out"
        grep -qF "URI:$WL_ID" "$OUT/$label-san.out" || fail "$label: served leaf lacks URI:$WL_ID"
        if [[ " ${served[*]} " == *" $got "* ]]; then continue; fi
        served+=("$got")
        info "$label: reload #$n, s_client verified leaf serial $got (return code 0)"
    done
    # Every signal followed a rotation: consecutive loads never saw the same leaf twice.
    awk -v from="$from" '{ if (NR > from && $3 == prev) { print "same serial loaded twice in a row: " $3; bad = 1 } prev = $3 } END { exit bad }' \
        "$rlog" || fail "$label: a reload did not follow a new SVID"
    info "$label: ${#served[@]} different leaves served and verified: ${served[*]}"
    sed 's/^/  | /' "$rlog"
}

step "A. api watch --config helper.conf (spiffe-helper keys): cmd = the s_server wrapper, renew_signal SIGHUP"
A_DIR="$WORKDIR/a-certs"
A_PORT="$(free_port)"
A_LOG="$WORKDIR/a-reloads.log"
{
    echo "agent_address = \"$AGENT_SOCK\""
    echo "cmd = \"$RELOADER\""
    echo "cmd_args = \"$A_PORT $A_DIR/svid.pem $A_DIR/svid_key.pem $A_LOG\""
    echo "cert_dir = \"$A_DIR\""
    echo 'renew_signal = "SIGHUP"'
    echo 'svid_file_name = "svid.pem"'
    echo 'svid_key_file_name = "svid_key.pem"'
    echo 'svid_bundle_file_name = "svid_bundle.pem"'
    echo 'jwt_svids = [{jwt_audience = "interop-watch", jwt_extra_audiences = ["extra"], jwt_svid_file_name = "jwt_svid.token"}]'
    echo 'jwt_bundle_file_name = "jwt_bundle.json"'
} >"$WORKDIR/helper.conf"
sed 's/^/  | /' "$WORKDIR/helper.conf"
start_bg watch-a "$SIGNET_AGENT" api watch --config "$WORKDIR/helper.conf"

step "B. api watch --write DIR --renew-signal SIGHUP --pid-file-name (SPIRE's file names, wrapper started here)"
B_DIR="$WORKDIR/b-certs"
B_PORT="$(free_port)"
B_LOG="$WORKDIR/b-reloads.log"
B_PID="$WORKDIR/b-server.pid"
start_bg reloader-b "$RELOADER" "$B_PORT" "$B_DIR/svid.0.pem" "$B_DIR/svid.0.key" "$B_LOG" "$B_PID"
wait_for "the B wrapper's pid file" 10 test -s "$B_PID"
start_bg watch-b "$SIGNET_AGENT" api watch --socket-path "$AGENT_SOCK" --write "$B_DIR" \
    --renew-signal SIGHUP --pid-file-name "$B_PID"

step "A: s_server restarted by the watch on every rotation; s_client verifies each new leaf with svid_bundle.pem"
wait_for "A's first s_server" 60 test -s "$A_LOG"
verify_reloads A "$A_DIR/svid_bundle.pem" "$A_PORT" "$A_LOG" 3

step "B: the same through the PID file, with bundle.0.pem"
# (The wrapper's own first start and the watch's first signal load the same leaf.)
verify_reloads B "$B_DIR/bundle.0.pem" "$B_PORT" "$B_LOG" 2 2

step "files: modes, content, no temporary files left"
for f in "$A_DIR/svid_key.pem" "$B_DIR/svid.0.key" "$A_DIR/jwt_svid.token" "$A_DIR/jwt_bundle.json"; do
    assert_eq "mode of $f" 600 "$(stat -c %a "$f")"
done
for f in "$A_DIR/svid.pem" "$A_DIR/svid_bundle.pem" "$B_DIR/svid.0.pem" "$B_DIR/bundle.0.pem"; do
    assert_eq "mode of $f" 644 "$(stat -c %a "$f")"
done
assert_eq "temporary files left" 0 "$(find "$A_DIR" "$B_DIR" -name '*.tmp' | wc -l)"
grep -q -- "-----BEGIN PRIVATE KEY-----" "$A_DIR/svid_key.pem" || fail "svid_key.pem holds no PKCS#8 key"
# The key on disk belongs to the leaf on disk (both files of one update).
assert_eq "A key matches leaf" \
    "$(openssl x509 -in "$A_DIR/svid.pem" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum)" \
    "$(openssl pkey -in "$A_DIR/svid_key.pem" -pubout -outform DER | sha256sum)"
pem_fingerprints "$A_DIR/svid_bundle.pem" >"$OUT/a-bundle.fp"
pem_fingerprints "$WORKDIR/bootstrap.pem" >"$OUT/server-bundle.fp"
assert_same_lines "svid_bundle.pem = the server's bundle" "$OUT/a-bundle.fp" "$OUT/server-bundle.fp"
grep -qF "\"$TRUST_DOMAIN\":" "$A_DIR/jwt_bundle.json" || fail "jwt_bundle.json has no $TRUST_DOMAIN entry"
must validate "$SIGNET_AGENT" api validate jwt --socket-path "$AGENT_SOCK" \
    --audience interop-watch --svid "$(cat "$A_DIR/jwt_svid.token")"
assert_file_contains "JWT-SVID file validates" "SPIFFE ID : $WL_ID" "$OUT/validate.out"

step "a bundle without the CA does not verify the served leaf"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=stranger -days 1 \
    -keyout "$WORKDIR/stranger.key" -out "$WORKDIR/stranger.pem" 2>/dev/null
must_fail stranger openssl s_client -connect "127.0.0.1:$A_PORT" -CAfile "$WORKDIR/stranger.pem" -verify_return_error

step "still running"
is_running watch-a || fail "watch A exited"
is_running watch-b || fail "watch B exited"
is_running agent || fail "agent exited"
echo PASS

#!/usr/bin/env bash
# go-spiffe against signet-agent: signet-server and signet-agent (join token and bootstrap bundle
# from signet-server's CLI), one entry for this uid with a short X509-SVID TTL (SVID_TTL, default
# 6 s). A go-spiffe v2 program (bin/spiffe-check) then: fetches and verifies the X.509 context,
# fetches a JWT-SVID and validates it through the agent (right and wrong audience) and locally
# against the JWT bundles, watches the X.509 context through two rotations verifying every
# update, and completes an mTLS handshake with itself over loopback from one X509Source.
# AGENT_IMPL=spire runs the same checks against the real spire-agent (checks the scenario).
# WATCH_ROTATIONS (default 2) and WATCH_FLAGS tune the watch. signet-agent renews at about half
# the SVID's life, so by default every replacement must arrive at least 1 s before the SVID it
# replaces expires ("-min-margin 1s"); spire-agent renews on its 5 s sync tick, so with it the
# margin is only reported.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
source "$INTEROP_DIR/lib/server.sh"
source "$INTEROP_DIR/lib/agent.sh"

require_bin "$SPIRE_SERVER" "$SPIFFE_CHECK"
require_agent_impl
TD="spiffe://$TRUST_DOMAIN"
WL_ID="$TD/go-spiffe/uid-$(id -u)"
TTL="${SVID_TTL:-6}"
ROTATIONS="${WATCH_ROTATIONS:-2}"
if [[ "$AGENT_IMPL" == signet ]]; then WATCH_FLAGS="${WATCH_FLAGS--min-margin 1s}"; else WATCH_FLAGS="${WATCH_FLAGS-}"; fi

step "start the server under test ($SERVER_IMPL)"
write_server_conf "$WORKDIR/server"
start_server
own_cli bootstrap bundle show
cp "$OUT/bootstrap.out" "$WORKDIR/bootstrap.pem"
[[ "$(pem_count "$WORKDIR/bootstrap.pem")" -ge 1 ]] || fail "bundle show printed no certificate"

step "join token and an entry for uid $(id -u) with a ${TTL}s X509-SVID TTL"
own_cli token token generate
TOKEN="$(py token "$OUT/token.out")"
AGENT_ID="$TD/spire/agent/join_token/$TOKEN"
own_cli entry entry create --parent-id "$AGENT_ID" --spiffe-id "$WL_ID" --selector "unix:uid:$(id -u)" \
    --x509-svid-ttl "$TTL"

step "start the agent under test ($AGENT_IMPL) with the join token"
write_agent_conf "$WORKDIR/agent" "$WORKDIR/bootstrap.pem"
start_agent agent "$TOKEN"
wait_for_svid agent "$WL_ID" 90

step "x509: FetchX509Context, default SVID ID, chain verified with x509svid.Verify"
check x509 x509 -expect "$WL_ID"
assert_file_contains "spiffe-check x509" "SPIFFE ID: $WL_ID" "$OUT/x509.out"
assert_file_contains "bundle set" "example.org (" "$OUT/x509.out"

step "jwt: FetchJWTSVID, ValidateJWTSVID (right and wrong audience), FetchJWTBundles + ParseAndValidate"
check jwt jwt -audience interop-go -expect "$WL_ID"
assert_file_contains "spiffe-check jwt" "agent refused it for audience \"not-interop-go\"" "$OUT/jwt.out"
assert_file_contains "spiffe-check jwt" "verified locally against the JWT bundle: $WL_ID" "$OUT/jwt.out"

step "watch: WatchX509Context through $ROTATIONS rotations, every update verified"
check watch watch -rotations "$ROTATIONS" -timeout "$((TTL * (ROTATIONS + 2) + 20))s" -expect "$WL_ID" $WATCH_FLAGS
assert_file_contains "spiffe-check watch" "watch: $ROTATIONS rotation(s)" "$OUT/watch.out"
report_mints agent "$WL_ID"

step "mtls: spiffetls server and client from one X509Source, each checks the other's ID"
check mtls mtls -expect "$WL_ID"
assert_file_contains "server side" "server: client is $WL_ID" "$OUT/mtls.out"
assert_file_contains "client side" "client: server is $WL_ID" "$OUT/mtls.out"

step "after the checks, the agent still serves a valid SVID"
check x509-after x509 -expect "$WL_ID"
is_running server || fail "server exited"
is_running agent || fail "agent exited"
echo PASS

#!/usr/bin/env bash
# java-spiffe 0.8.17 (io.spiffe:java-spiffe-core + io.spiffe:grpc-netty-linux, on grpc-java
# 1.80, which sends the raw socket path as :authority) against signet-agent, unmodified: no
# channel option, no authority override. Set up as 70 (entry for this uid and gid with a short
# X509-SVID TTL, SVID_TTL, default 6 s). Checks: X.509 context and DefaultX509Source, every
# chain verified to the bundle by java-spiffe's X509SvidValidator and by the JDK's PKIX path
# validation, key matched to the leaf; JWT-SVID fetch, ValidateJWTSVID for the right audience
# and a wrong one (INVALID_ARGUMENT with SPIRE's text), local validation against the JWT
# bundles, DefaultJwtSource; watchX509Context through two rotations; and, as another gid (root
# only), PERMISSION_DENIED "no identity issued".
# AGENT_IMPL=spire runs the same checks against spire-agent v1.13.3 (the control).
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
source "$INTEROP_DIR/lib/server.sh"
source "$INTEROP_DIR/lib/agent.sh"

require_bin "$SPIRE_SERVER" "$SPIFFE_CHECK"
[[ -f "$JAVA_CHECK_DIR/build/spiffe-check.jar" ]] || fail "missing $JAVA_CHECK_DIR/build/spiffe-check.jar (run tests/interop/build.sh)"
require_agent_impl
TD="spiffe://$TRUST_DOMAIN"
WL_ID="$TD/java-spiffe/uid-$(id -u)"
TTL="${SVID_TTL:-6}"

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
wait_for_svid agent "$WL_ID" 90

step "java-spiffe x509: fetchX509Context + DefaultX509Source, chains verified (X509SvidValidator, PKIX)"
javacheck x509 x509 -expect "$WL_ID"
assert_file_contains "java-spiffe x509" "SPIFFE ID: $WL_ID" "$OUT/x509.out"

step "java-spiffe jwt: fetch, validate (right and wrong audience), local validation, DefaultJwtSource"
javacheck jwt jwt -audience interop-java -expect "$WL_ID"
assert_file_contains "java-spiffe jwt" "SPIFFE ID: $WL_ID" "$OUT/jwt.out"

step "java-spiffe watch: watchX509Context through 2 rotations, every update verified"
javacheck watch watch -rotations 2 -timeout "$((TTL * 4 + 20))" -expect "$WL_ID"
assert_file_contains "java-spiffe watch" "Rotations: " "$OUT/watch.out"

step "java-spiffe as a workload with no entry: PERMISSION_DENIED \"no identity issued\""
if can_change_gid; then
    must no-identity as_other_gid java -cp "$JAVA_CHECK_DIR/build/spiffe-check.jar:$JAVA_CHECK_DIR/lib/*" \
        dev.signet.interop.SpiffeCheck error -addr "unix://$AGENT_SOCK"
    assert_file_contains "no identity" "no identity issued" "$OUT/no-identity.out"
else
    info "skipped: needs root to run as another gid"
fi
is_running agent || fail "agent exited"
echo PASS

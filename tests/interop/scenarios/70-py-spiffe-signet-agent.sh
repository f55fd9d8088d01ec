#!/usr/bin/env bash
# py-spiffe (the official Python library, on grpc C-core, which sends the percent-encoded
# socket path as :authority) against signet-agent, unmodified: no channel option, no authority
# override. Set up as 40 (entry for this uid and gid with a short X509-SVID TTL, SVID_TTL,
# default 6 s). Checks: X.509 context and X509Source, every chain verified to the bundle with
# cryptography's path validation; JWT-SVID fetch, ValidateJWTSVID for the right audience and a
# wrong one (SPIRE's message), JwtSource, local validation against the JWT bundles; a watch
# through two rotations; and, as another gid (root only), PermissionDenied "no identity issued".
# AGENT_IMPL=spire runs the same checks against spire-agent v1.13.3 (the control).
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
source "$INTEROP_DIR/lib/server.sh"
source "$INTEROP_DIR/lib/agent.sh"

require_bin "$SPIRE_SERVER" "$SPIFFE_CHECK" "$PYENV_PY"
require_agent_impl
TD="spiffe://$TRUST_DOMAIN"
WL_ID="$TD/py-spiffe/uid-$(id -u)"
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

step "py-spiffe x509: fetch_x509_context + X509Source, chains verified with cryptography"
pycheck x509 x509 -expect "$WL_ID"
assert_file_contains "py-spiffe x509" "SPIFFE ID: $WL_ID" "$OUT/x509.out"

step "py-spiffe jwt: fetch, validate (right and wrong audience), JwtSource, local validation"
pycheck jwt jwt -audience interop-py -expect "$WL_ID"
assert_file_contains "py-spiffe jwt" "SPIFFE ID: $WL_ID" "$OUT/jwt.out"

step "py-spiffe watch: stream_x509_contexts through 2 rotations, every update verified"
pycheck watch watch -rotations 2 -timeout "$((TTL * 4 + 20))" -expect "$WL_ID"
assert_file_contains "py-spiffe watch" "Rotations: " "$OUT/watch.out"

step "py-spiffe as a workload with no entry: PermissionDenied \"no identity issued\""
if can_change_gid; then
    must no-identity as_other_gid "$PYENV_PY" "$INTEROP_DIR/py/spiffe_check.py" error -addr "unix://$AGENT_SOCK"
    assert_file_contains "no identity" "no identity issued" "$OUT/no-identity.out"
else
    info "skipped: needs root to run as another gid"
fi
is_running agent || fail "agent exited"
echo PASS

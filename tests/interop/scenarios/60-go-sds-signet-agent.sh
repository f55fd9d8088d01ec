#!/usr/bin/env bash
# Envoy SDS v3 against signet-agent: signet-server and signet-agent (join token and bootstrap
# bundle from signet-server's CLI, as in scenario 40), one entry for this uid with a short
# X509-SVID TTL (SVID_TTL, default 6 s). A Go client built on go-control-plane's protos
# (bin/sds-check) then talks SecretDiscoveryService on the agent's public socket the way Envoy
# does (authority "sds-grpc", no workload.spiffe.io header, node on the first request only):
# StreamSecrets "default" -> TlsCertificate; widen to ["default","ROOTCA"] -> SPIFFE cert
# validator for example.org whose bundle verifies the leaf; ACK -> nothing re-sent; a pushed
# rotation is NACKed -> not re-sent; FetchSecrets; an unauthorised name fails the stream with
# InvalidArgument; DeltaSecrets is Unimplemented.
# AGENT_IMPL=spire runs the same checks against the real spire-agent (checks the scenario).
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
source "$INTEROP_DIR/lib/server.sh"
source "$INTEROP_DIR/lib/agent.sh"

SDS_CHECK="${SDS_CHECK:-$SPIRE_BIN/sds-check}"
require_bin "$SPIRE_SERVER" "$SPIFFE_CHECK" "$SDS_CHECK"
require_agent_impl
TD="spiffe://$TRUST_DOMAIN"
WL_ID="$TD/sds/uid-$(id -u)"
TTL="${SVID_TTL:-6}"

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

step "sds-check: StreamSecrets (ACK, NACK, rotation push), FetchSecrets, unknown name, DeltaSecrets"
must sds "$SDS_CHECK" -addr "unix://$AGENT_SOCK" -expect "$WL_ID" -rotate-timeout "$((TTL * 3 + 2))s"
assert_file_contains "sds-check" "sds-check: PASS" "$OUT/sds.out"
assert_file_contains "rotation" "ok: rotation pushed" "$OUT/sds.out"

step "after the checks, the agent still serves a valid SVID over the Workload API"
check x509-after x509 -expect "$WL_ID"
is_running server || fail "server exited"
is_running agent || fail "agent exited"
echo PASS

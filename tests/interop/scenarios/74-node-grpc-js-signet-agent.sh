#!/usr/bin/env bash
# Node's @grpc/grpc-js (pure-JS HTTP/2, Workload API proto loaded from proto/) against
# signet-agent, no authority override: FetchX509SVID first response (chain verified with
# node:crypto to the bundle, key matches the leaf), FetchX509Bundles, FetchJWTSVID,
# ValidateJWTSVID right and wrong audience (SPIRE's text), and InvalidArgument "security header
# missing from request" without the header. AGENT_IMPL=spire runs it against spire-agent.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
source "$INTEROP_DIR/lib/server.sh"
source "$INTEROP_DIR/lib/agent.sh"

require_bin "$SPIRE_SERVER" "$SPIFFE_CHECK"
[[ -d "$SPIRE_BIN/node/node_modules/@grpc/grpc-js" ]] || fail "@grpc/grpc-js not installed (run build.sh)"
require_agent_impl
TD="spiffe://$TRUST_DOMAIN"
WL_ID="$TD/grpc-js/uid-$(id -u)"

step "start the server under test ($SERVER_IMPL)"
write_server_conf "$WORKDIR/server"
start_server
own_cli bootstrap bundle show
cp "$OUT/bootstrap.out" "$WORKDIR/bootstrap.pem"

step "join token and an entry for uid $(id -u)"
own_cli token token generate
TOKEN="$(py token "$OUT/token.out")"
AGENT_ID="$TD/spire/agent/join_token/$TOKEN"
own_cli entry entry create --parent-id "$AGENT_ID" --spiffe-id "$WL_ID" --selector "unix:uid:$(id -u)"

step "start the agent under test ($AGENT_IMPL)"
write_agent_conf "$WORKDIR/agent" "$WORKDIR/bootstrap.pem"
start_agent agent "$TOKEN"
wait_for_svid agent "$WL_ID" 90

step "@grpc/grpc-js: X.509 SVID and bundles, JWT fetch and validation, missing header"
nodecheck node "$WL_ID" interop-node
assert_file_contains "grpc-js x509" "SPIFFE ID: $WL_ID" "$OUT/node.out"
assert_file_contains "grpc-js wrong audience" 'expected audience in ["not-interop-node"] (audience=["interop-node"])' "$OUT/node.out"
assert_file_contains "grpc-js no header" "No header: security header missing from request" "$OUT/node.out"
is_running agent || fail "agent exited"
echo PASS

#!/usr/bin/env bash
# Error texts as SPIRE's: spire-agent v1.13.3 and signet-agent, both attested to the server
# under test with the same kind of entry for this uid and gid, receive the same failing
# Workload API and SDS requests from one grpcio client (py/error_table.py): missing or wrong
# security header, missing audience, malformed and not-entitled spiffe_id, missing svid,
# malformed token, wrong audience, unknown signing key, unknown trust domain, SDS names not
# served, DeltaSecrets; and, as another gid (root only), every RPC without an identity. Every
# gRPC code and message must be identical; the table is printed either way.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
source "$INTEROP_DIR/lib/server.sh"
source "$INTEROP_DIR/lib/agent.sh"

require_bin "$SPIRE_SERVER" "$SPIRE_AGENT" "$SIGNET_AGENT" "$SPIFFE_CHECK" "$PYENV_PY"
TD="spiffe://$TRUST_DOMAIN"

step "start the server under test ($SERVER_IMPL)"
write_server_conf "$WORKDIR/server"
start_server
own_cli bootstrap bundle show
cp "$OUT/bootstrap.out" "$WORKDIR/bootstrap.pem"

for impl in spire signet; do
    step "$impl-agent with an entry for uid $(id -u) gid $(id -g)"
    own_cli "token-$impl" token generate
    token="$(py token "$OUT/token-$impl.out")"
    own_cli "entry-$impl" entry create --parent-id "$TD/spire/agent/join_token/$token" \
        --spiffe-id "$TD/errors/$impl" --selector "unix:uid:$(id -u)" --selector "unix:gid:$(id -g)"
    write_agent_conf "$WORKDIR/$impl" "$WORKDIR/bootstrap.pem"
    AGENT_IMPL="$impl" start_agent "agent-$impl" "$token"
    wait_for_svid "agent-$impl" "$TD/errors/$impl" 90
    printf -v "SOCK_$impl" '%s' "$AGENT_SOCK"
done

step "the same failing requests to both agents"
run_cli table "$PYENV_PY" "$INTEROP_DIR/py/error_table.py" -spire "$SOCK_spire" -signet "$SOCK_signet" -td "$TRUST_DOMAIN"
sed 's/^/  | /' "$OUT/table.out"
[[ $CLI_RC -eq 0 ]] || fail "signet-agent's errors differ from spire-agent's: $(grep -c '^DIFF' "$OUT/table.out") row(s) $(cat "$OUT/table.err" | head -c 1500)"

step "the same requests from a workload with no identity"
if can_change_gid; then
    run_cli table-none as_other_gid "$PYENV_PY" "$INTEROP_DIR/py/error_table.py" -spire "$SOCK_spire" \
        -signet "$SOCK_signet" -td "$TRUST_DOMAIN" -no-identity
    sed 's/^/  | /' "$OUT/table-none.out"
    [[ $CLI_RC -eq 0 ]] || fail "no-identity errors differ: $(cat "$OUT/table-none.err" | head -c 1500)"
else
    info "skipped: needs root to run as another gid"
fi
echo PASS

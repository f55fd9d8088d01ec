#!/usr/bin/env bash
# signet-agent against the REAL spire-server: the agent attests with a join token from
# `spire-server token generate` (bootstrap bundle from `spire-server bundle show`), and serves the
# SVID of an entry made with `spire-server entry create`, checked with `signet-agent api fetch x509`
# (files verified with openssl) and with go-spiffe (bin/spiffe-check x509 and jwt).
# spire-server has no signet.sync.v1.Sync/Watch push (Unimplemented), so the agent must fall back
# to polling: an entry created later must reach the workload, and the short-lived SVID must keep
# rotating. Always runs against spire-server, whatever SERVER_IMPL says; AGENT_IMPL=spire runs it
# with spire-agent instead (checks the scenario).
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
SERVER_IMPL=spire
source "$INTEROP_DIR/lib/server.sh"
source "$INTEROP_DIR/lib/agent.sh"

require_bin "$SPIRE_SERVER" "$SPIFFE_CHECK"
require_agent_impl
TD="spiffe://$TRUST_DOMAIN"
UID_NOW="$(id -u)"
WL_ID="$TD/signet-agent/uid-$UID_NOW"
LATE_ID="$TD/signet-agent/late-uid-$UID_NOW"
TTL="${SVID_TTL:-10}"

# fetch_ids <name>: the SPIFFE IDs the agent serves this workload, sorted, into $OUT/<name>.ids
fetch_ids() {
    if [[ "$AGENT_IMPL" == signet ]]; then
        run_cli "$1" "$SIGNET_AGENT" api fetch x509 --socket-path "$AGENT_SOCK" --output json
    else
        run_cli "$1" "$SPIRE_AGENT" api fetch x509 -socketPath "$AGENT_SOCK" -output json
    fi
    if [[ $CLI_RC -eq 0 ]]; then py svids "$OUT/$1.out" >"$OUT/$1.ids"; else : >"$OUT/$1.ids"; fi
}

step "start the real spire-server"
write_server_conf "$WORKDIR/server"
start_server
spire_cli bootstrap bundle show
cp "$OUT/bootstrap.out" "$WORKDIR/bootstrap.pem"

step "spire-server token generate, spire-server entry create (uid $UID_NOW, X509-SVID TTL ${TTL}s)"
spire_cli token token generate
TOKEN="$(py token "$OUT/token.out")"
AGENT_ID="$TD/spire/agent/join_token/$TOKEN"
spire_cli entry entry create -parentID "$AGENT_ID" -spiffeID "$WL_ID" -selector "unix:uid:$UID_NOW" -x509SVIDTTL "$TTL"

step "the agent under test ($AGENT_IMPL) attests to spire-server with the join token"
write_agent_conf "$WORKDIR/agent" "$WORKDIR/bootstrap.pem"
start_agent agent "$TOKEN"
wait_for_svid agent "$WL_ID" 90
spire_cli agents agent list -output json
py agents "$OUT/agents.out" >"$OUT/agents.tsv"
assert_eq "spire-server agent list" "$(printf '%s\tjoin_token\tfalse\tfalse' "$AGENT_ID")" "$(cat "$OUT/agents.tsv")"

step "api fetch x509 returns the entry's SVID, which verifies against spire-server's bundle"
fetch_ids fetch
[[ $CLI_RC -eq 0 ]] || fail "api fetch x509 failed: $(head -c 2000 "$OUT/fetch.err")"
assert_eq "SVIDs served" "$WL_ID" "$(paste -sd' ' "$OUT/fetch.ids")"
mkdir -p "$WORKDIR/svids"
if [[ "$AGENT_IMPL" == signet ]]; then
    must fetch-write "$SIGNET_AGENT" api fetch x509 --socket-path "$AGENT_SOCK" --write "$WORKDIR/svids"
else
    must fetch-write "$SPIRE_AGENT" api fetch x509 -socketPath "$AGENT_SOCK" -write "$WORKDIR/svids"
fi
must verify openssl verify -CAfile "$WORKDIR/bootstrap.pem" -untrusted "$WORKDIR/svids/svid.0.pem" "$WORKDIR/svids/svid.0.pem"
uri="$(openssl x509 -in "$WORKDIR/svids/svid.0.pem" -noout -ext subjectAltName | grep -o 'URI:[^,]*' | sed 's/^URI://')"
assert_eq "URI SAN of svid.0.pem" "$WL_ID" "$uri"
must key-match bash -c "diff <(openssl x509 -in '$WORKDIR/svids/svid.0.pem' -noout -pubkey) <(openssl pkey -in '$WORKDIR/svids/svid.0.key' -pubout)"
pem_fingerprints "$WORKDIR/bootstrap.pem" >"$OUT/fp-server.txt"
pem_fingerprints "$WORKDIR/svids/bundle.0.pem" >"$OUT/fp-agent.txt"
assert_same_lines "bundle served by the agent vs spire-server bundle show" "$OUT/fp-server.txt" "$OUT/fp-agent.txt"

step "go-spiffe sees the same: spiffe-check x509 and jwt"
check x509 x509 -expect "$WL_ID"
check jwt jwt -audience interop-45 -expect "$WL_ID"

step "the ${TTL}s SVID keeps rotating (renewals from spire-server), every update verified"
# signet-agent renews at about half the SVID's life: each replacement must come >= 2 s early.
margin=()
[[ "$AGENT_IMPL" == signet ]] && margin=(-min-margin 2s)
check watch watch -rotations 2 -timeout "$((TTL * 6 + 20))s" -expect "$WL_ID" "${margin[@]}"
report_mints agent "$WL_ID"

step "no push from spire-server: an entry created now still reaches the workload (polling)"
t0=$SECONDS
spire_cli late entry create -parentID "$AGENT_ID" -spiffeID "$LATE_ID" -selector "unix:uid:$UID_NOW"
printf '%s\n' "$LATE_ID" "$WL_ID" | sort >"$OUT/want-late.ids"
deadline=$((SECONDS + 60))
until fetch_ids fetch-late >/dev/null && cmp -s "$OUT/want-late.ids" "$OUT/fetch-late.ids"; do
    is_running agent || fail "agent exited while waiting for the new entry"
    ((SECONDS < deadline)) || fail "entry $LATE_ID created on spire-server did not reach the workload within 60s (served: [$(paste -sd' ' "$OUT/fetch-late.ids")]); the agent did not fall back to polling"
    sleep 1
done
info "ok: the new entry reached the workload $((SECONDS - t0))s after it was created"

step "how the agent handled the missing push service"
if [[ "$AGENT_IMPL" == signet ]]; then
    grep -nE 'push|Sync/Watch|signet\.sync|Unimplemented' "$LOGDIR/agent.log" | head -n 20 | sed 's/^/  | /' || true
    n="$(grep -cE 'change push stream' "$LOGDIR/agent.log" || true)"
    info "signet-agent logged $n change-push message(s) in $SECONDS s"
fi
grep -nE 'signet\.sync|Unimplemented|unknown service' "$LOGDIR/server.log" | head -n 5 | sed 's/^/  | /' || true

is_running server || fail "spire-server exited"
is_running agent || fail "agent exited"
echo PASS

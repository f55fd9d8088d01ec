#!/usr/bin/env bash
# A real `spire-agent` attests to the server under test with a join token made by the real
# `spire-server` CLI, then serves X509- and JWT-SVIDs to a workload (the spire-agent CLI itself)
# for entries parented to the agent directly and through the join-token alias. Reusing the token
# is refused.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
source "$INTEROP_DIR/lib/server.sh"

require_bin "$SPIRE_SERVER" "$SPIRE_AGENT"
TD="spiffe://$TRUST_DOMAIN"
UID_NOW="$(id -u)"

step "start the server under test ($SERVER_IMPL)"
write_server_conf "$WORKDIR/server"
start_server
spire_cli bootstrap bundle show
cp "$OUT/bootstrap.out" "$WORKDIR/bootstrap.pem"
pem_fingerprints "$WORKDIR/bootstrap.pem" >"$OUT/fp-server.txt"

step "join token with alias, and entries for the workload"
spire_cli token token generate -spiffeID "$TD/node-alias"
TOKEN="$(py token "$OUT/token.out")"
AGENT_ID="$TD/spire/agent/join_token/$TOKEN"
spire_cli e-alias entry create -parentID "$TD/node-alias" -spiffeID "$TD/via-alias" -selector "unix:uid:$UID_NOW"
spire_cli e-direct entry create -parentID "$AGENT_ID" -spiffeID "$TD/direct" -selector "unix:uid:$UID_NOW" -dns direct.example.org
spire_cli e-child entry create -parentID "$TD/direct" -spiffeID "$TD/child-of-direct" -selector "unix:uid:$UID_NOW"
spire_cli e-other entry create -parentID "$TD/spire/agent/join_token/someone-else" -spiffeID "$TD/not-mine" -selector "unix:uid:$UID_NOW"
spire_cli e-wrong-uid entry create -parentID "$AGENT_ID" -spiffeID "$TD/other-uid" -selector "unix:uid:$((UID_NOW + 4242))"

step "spire-agent attests with the join token"
write_agent_conf "$WORKDIR/agent" "$WORKDIR/bootstrap.pem"
start_bg agent "$SPIRE_AGENT" run -config "$AGENT_CONF" -joinToken "$TOKEN"
wait_for_log agent "Node attestation was successful" 60
assert_file_contains "agent log" "$AGENT_ID" "$LOGDIR/agent.log"
wait_for_socket agent "$AGENT_SOCK" 30

step "both CLIs list the attested agent"
spire_cli agents agent list -output json
py agents "$OUT/agents.out" >"$OUT/agents.tsv"
assert_eq "agents" "$(printf '%s\tjoin_token\tfalse\tfalse' "$AGENT_ID")" "$(cat "$OUT/agents.tsv")"
spire_cli agents-pretty agent list
assert_file_contains "agent list" "SPIFFE ID         : $AGENT_ID" "$OUT/agents-pretty.out"
spire_cli agent-show agent show -spiffeID "$AGENT_ID"
assert_file_contains "agent show" "$AGENT_ID" "$OUT/agent-show.out"
own_cli own-agents agent list
py agents "$OUT/own-agents.out" >"$OUT/own-agents.tsv"
assert_same_lines "own agent list vs spire-server agent list" "$OUT/agents.tsv" "$OUT/own-agents.tsv"

step "the workload gets exactly its authorized X509-SVIDs"
printf '%s\n' "$TD/child-of-direct" "$TD/direct" "$TD/via-alias" >"$OUT/want-svids.txt"
deadline=$((SECONDS + 90))
while :; do
    run_cli fetch "$SPIRE_AGENT" api fetch x509 -socketPath "$AGENT_SOCK" -output json
    if [[ $CLI_RC -eq 0 ]]; then
        py svids "$OUT/fetch.out" >"$OUT/got-svids.txt"
        cmp -s "$OUT/want-svids.txt" "$OUT/got-svids.txt" && break
    fi
    ((SECONDS < deadline)) || fail "workload did not get SVIDs [$(paste -sd' ' "$OUT/want-svids.txt")] within 90s; last: [$(paste -sd' ' "$OUT/got-svids.txt" 2>/dev/null)]"
    sleep 2
done
info "ok: SVIDs $(paste -sd' ' "$OUT/got-svids.txt")"

step "SVID files verify against the server's bundle"
mkdir -p "$WORKDIR/svids"
must fetch-write "$SPIRE_AGENT" api fetch x509 -socketPath "$AGENT_SOCK" -write "$WORKDIR/svids"
assert_file_contains "fetch output" "Received 3 svids" "$OUT/fetch-write.out"
pem_fingerprints "$WORKDIR/svids/bundle.0.pem" >"$OUT/fp-agent.txt"
assert_same_lines "bundle served by the agent vs spire-server bundle show" "$OUT/fp-server.txt" "$OUT/fp-agent.txt"
for i in 0 1 2; do
    svid="$WORKDIR/svids/svid.$i.pem"
    must "verify-svid-$i" openssl verify -CAfile "$WORKDIR/bootstrap.pem" -untrusted "$svid" "$svid"
    uri="$(openssl x509 -in "$svid" -noout -ext subjectAltName | grep -o 'URI:[^,]*' | sed 's/^URI://')"
    grep -qxF "$uri" "$OUT/want-svids.txt" || fail "svid.$i.pem has unexpected URI SAN [$uri]"
    must "key-match-$i" bash -c "diff <(openssl x509 -in '$svid' -noout -pubkey) <(openssl pkey -in '$WORKDIR/svids/svid.$i.key' -pubout)"
    if [[ "$uri" == "$TD/direct" ]]; then
        openssl x509 -in "$svid" -noout -ext subjectAltName | grep -qF 'DNS:direct.example.org' || fail "DNS SAN missing on $uri"
        info "ok: $uri carries DNS:direct.example.org"
    fi
done
info "ok: every SVID chains to the server bundle, has an expected URI SAN and matches its key"

step "JWT-SVID: fetch and validate through the agent"
must jwt "$SPIRE_AGENT" api fetch jwt -socketPath "$AGENT_SOCK" -audience interop -spiffeID "$TD/via-alias"
JWT="$(awk '/^token\(/ { getline; gsub(/[ \t]/, ""); print; exit }' "$OUT/jwt.out")"
assert_match "JWT-SVID" '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' "$JWT"
must jwt-validate "$SPIRE_AGENT" api validate jwt -socketPath "$AGENT_SOCK" -audience interop -svid "$JWT"
assert_file_contains "validate" "SVID is valid" "$OUT/jwt-validate.out"
assert_file_contains "validate" "$TD/via-alias" "$OUT/jwt-validate.out"
run_cli jwt-validate-bad "$SPIRE_AGENT" api validate jwt -socketPath "$AGENT_SOCK" -audience someone-else -svid "$JWT"
[[ $CLI_RC -ne 0 ]] || fail "JWT-SVID validated for the wrong audience"

step "signet-agent's Workload API CLI against the real spire-agent"
if [[ -x "$SIGNET_AGENT" ]]; then
    must sa-fetch "$SIGNET_AGENT" api fetch x509 --socket-path "$AGENT_SOCK" --output json
    py svids "$OUT/sa-fetch.out" >"$OUT/sa-svids.txt"
    assert_same_lines "SVIDs seen by signet-agent api fetch" "$OUT/want-svids.txt" "$OUT/sa-svids.txt"
    mkdir -p "$WORKDIR/sa-svids"
    must sa-fetch-write "$SIGNET_AGENT" api fetch x509 --socket-path "$AGENT_SOCK" --write "$WORKDIR/sa-svids"
    pem_fingerprints "$WORKDIR/sa-svids/bundle.0.pem" >"$OUT/fp-sa.txt"
    assert_same_lines "bundle written by signet-agent" "$OUT/fp-server.txt" "$OUT/fp-sa.txt"
    for i in 0 1 2; do
        must "sa-verify-$i" openssl verify -CAfile "$WORKDIR/sa-svids/bundle.0.pem" -untrusted "$WORKDIR/sa-svids/svid.$i.pem" "$WORKDIR/sa-svids/svid.$i.pem"
        must "sa-key-$i" bash -c "diff <(openssl x509 -in '$WORKDIR/sa-svids/svid.$i.pem' -noout -pubkey) <(openssl pkey -in '$WORKDIR/sa-svids/svid.$i.key' -pubout)"
    done
    must sa-jwt "$SIGNET_AGENT" api fetch jwt --socket-path "$AGENT_SOCK" --audience interop --spiffe-id "$TD/via-alias"
    SA_JWT="$(awk '/^token\(/ { getline; gsub(/[ \t]/, ""); print; exit }' "$OUT/sa-jwt.out")"
    assert_match "JWT-SVID from signet-agent CLI" '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' "$SA_JWT"
    must sa-jwt-validate-by-spire "$SPIRE_AGENT" api validate jwt -socketPath "$AGENT_SOCK" -audience interop -svid "$SA_JWT"
    must sa-validate "$SIGNET_AGENT" api validate jwt --socket-path "$AGENT_SOCK" --audience interop --svid "$JWT"
    assert_file_contains "signet-agent api validate jwt" "SVID is valid" "$OUT/sa-validate.out"
    run_cli sa-validate-bad "$SIGNET_AGENT" api validate jwt --socket-path "$AGENT_SOCK" --audience someone-else --svid "$JWT"
    [[ $CLI_RC -ne 0 ]] || fail "signet-agent validated a JWT-SVID for the wrong audience"
else
    info "skipped: $SIGNET_AGENT not built"
fi

step "the join token cannot be used twice"
write_agent_conf "$WORKDIR/agent2" "$WORKDIR/bootstrap.pem"
start_bg agent2 "$SPIRE_AGENT" run -config "$AGENT_CONF" -joinToken "$TOKEN"
# spire-agent retries a failed attestation for a while before exiting; the first refusal is enough.
REFUSAL="join token does not exist or has already been used"
deadline=$((SECONDS + 60))
until grep -qF "$REFUSAL" "$LOGDIR/agent2.log"; do
    is_running agent2 || fail "second agent exited without logging [$REFUSAL]"
    ((SECONDS < deadline)) || fail "second agent did not log [$REFUSAL] within 60s"
    sleep 0.5
done
info "ok: second agent was refused: $(grep -m1 -F "$REFUSAL" "$LOGDIR/agent2.log" | cut -c1-300)"
[[ ! -S "$AGENT_SOCK" ]] || fail "second agent opened its Workload API socket"
stop_bg agent2
spire_cli agents-after agent list -output json
py agents "$OUT/agents-after.out" >"$OUT/agents-after.tsv"
assert_same_lines "agents after the refused attestation" "$OUT/agents.tsv" "$OUT/agents-after.tsv"

is_running server || fail "server exited"
is_running agent || fail "agent exited"
echo PASS

#!/usr/bin/env bash
# Two real `spire-agent`s attest to the server under test with join tokens. `spire-server agent
# ban` makes the first one shut down (the server's PermissionDenied must carry the AGENT_BANNED
# detail SPIRE agents look for); `agent evict` makes the second (a join-token agent, which cannot
# re-attest) shut down too. Agent list / show / count agree between both CLIs throughout.
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

step "attest agents A and B"
for a in A B; do
    spire_cli "token-$a" token generate
    token="$(py token "$OUT/token-$a.out")"
    eval "ID_$a=$TD/spire/agent/join_token/$token"
    eval "TOKEN_$a=$token"
done
spire_cli e-A entry create -parentID "$ID_A" -spiffeID "$TD/wl-a" -selector "unix:uid:$UID_NOW"
spire_cli e-B entry create -parentID "$ID_B" -spiffeID "$TD/wl-b" -selector "unix:uid:$UID_NOW"
for a in A B; do
    write_agent_conf "$WORKDIR/agent-$a" "$WORKDIR/bootstrap.pem"
    eval "SOCK_$a=$AGENT_SOCK"
    token_var="TOKEN_$a"
    start_bg "agent-$a" "$SPIRE_AGENT" run -config "$AGENT_CONF" -joinToken "${!token_var}"
done
for a in A B; do
    wait_for_log "agent-$a" "Node attestation was successful" 60
    sock_var="SOCK_$a"
    wait_for_socket "agent-$a" "${!sock_var}" 30
done

fetch_ids() { # fetch_ids <socket>: SPIFFE IDs the workload gets now
    "$SPIRE_AGENT" api fetch x509 -socketPath "$1" -output json 2>/dev/null >"$OUT/fetch.json" || return 0
    py svids "$OUT/fetch.json"
}
serves() { [[ "$(fetch_ids "$1")" == "$2" ]]; }
wait_for "agent A serves $TD/wl-a" 60 serves "$SOCK_A" "$TD/wl-a"
wait_for "agent B serves $TD/wl-b" 60 serves "$SOCK_B" "$TD/wl-b"

compare_agent_lists() { # compare_agent_lists <label>
    spire_cli "agents-$1" agent list -output json
    py agents "$OUT/agents-$1.out" >"$OUT/agents-$1.tsv"
    own_cli "own-agents-$1" agent list
    py agents "$OUT/own-agents-$1.out" >"$OUT/own-agents-$1.tsv"
    assert_same_lines "agent list ($1): own CLI vs spire-server" "$OUT/agents-$1.tsv" "$OUT/own-agents-$1.tsv"
}

step "both agents listed; count 2"
compare_agent_lists before
printf '%s\tjoin_token\tfalse\tfalse\n' "$ID_A" "$ID_B" >"$OUT/want-before.tsv"
assert_same_lines "agents before ban" "$OUT/want-before.tsv" "$OUT/agents-before.tsv"
spire_cli count-before agent count
assert_match "agent count" '^2 attested agents$' "$(cat "$OUT/count-before.out")"

step "ban agent A: it shuts down; the server lists it as banned"
spire_cli ban agent ban -spiffeID "$ID_A"
assert_file_contains "agent ban" "Agent banned successfully" "$OUT/ban.out"
wait_for_log agent-A "Agent is banned: removing SVID and shutting down" 90
wait_for "agent A to exit" 30 bash -c "! kill -0 $PID_agent_A"
compare_agent_lists banned
printf '%s\tjoin_token\t%s\tfalse\n' "$ID_A" true "$ID_B" false >"$OUT/want-banned.tsv"
assert_same_lines "agents after ban" "$OUT/want-banned.tsv" "$OUT/agents-banned.tsv"
spire_cli list-banned agent list -banned true -output json
assert_eq "agent list -banned true" "$ID_A" "$(py agents "$OUT/list-banned.out" | cut -f1)"
spire_cli show-banned agent show -spiffeID "$ID_A" -output json
assert_eq "agent show: banned" True "$(py json-get "$OUT/show-banned.out" banned)"
assert_eq "agent B still serves" "$TD/wl-b" "$(fetch_ids "$SOCK_B")"

step "restarting A with its (used) join token is refused"
write_agent_conf "$WORKDIR/agent-A2" "$WORKDIR/bootstrap.pem"
start_bg agent-A2 "$SPIRE_AGENT" run -config "$AGENT_CONF" -joinToken "$TOKEN_A"
wait_for_log agent-A2 "join token does not exist or has already been used" 60
stop_bg agent-A2

step "evict agent B: it shuts down (join-token agents cannot re-attest) and leaves the list"
spire_cli evict agent evict -spiffeID "$ID_B"
assert_file_contains "agent evict" "Agent evicted successfully" "$OUT/evict.out"
wait_for_log agent-B "removing SVID and shutting down" 90
info "agent B said: $(grep -m1 -F "removing SVID and shutting down" "$LOGDIR/agent-B.log" | cut -c1-400)"
wait_for "agent B to exit" 30 bash -c "! kill -0 $PID_agent_B"
compare_agent_lists evicted
printf '%s\tjoin_token\ttrue\tfalse\n' "$ID_A" >"$OUT/want-evicted.tsv"
assert_same_lines "agents after evict" "$OUT/want-evicted.tsv" "$OUT/agents-evicted.tsv"
spire_cli_try show-evicted agent show -spiffeID "$ID_B"
[[ $CLI_RC -ne 0 ]] || fail "agent show of an evicted agent succeeded"
assert_file_contains "agent show (evicted)" "NotFound" "$OUT/show-evicted.err"

step "evicting the banned agent removes it (and its ban)"
spire_cli evict-A agent evict -spiffeID "$ID_A"
spire_cli count-after agent count
assert_match "agent count" '^0 attested agents$' "$(cat "$OUT/count-after.out")"
compare_agent_lists empty

is_running server || fail "server exited"
echo PASS

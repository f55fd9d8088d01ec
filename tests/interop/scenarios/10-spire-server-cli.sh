#!/usr/bin/env bash
# The real `spire-server` CLI manages the server under test over its admin socket: entries,
# join tokens, bundle and agents. Every answer is checked on its own and against the server's own
# CLI (signet-server), comparing parsed IDs / fingerprints rather than bytes.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
source "$INTEROP_DIR/lib/server.sh"

require_bin "$SPIRE_SERVER"
TD="spiffe://$TRUST_DOMAIN"

step "start the server under test ($SERVER_IMPL)"
write_server_conf "$WORKDIR/server"
start_server

step "empty server: no entries, no agents"
spire_cli entry-show-empty entry show
assert_eq "entry count (spire-server entry show)" 0 "$(py count "$OUT/entry-show-empty.out")"
spire_cli agent-list-empty agent list
assert_file_contains "agent list" "No attested agents found" "$OUT/agent-list-empty.out"

step "spire-server entry create (pretty output)"
spire_cli create1 entry create -parentID "$TD/spire/agent/x" -spiffeID "$TD/workload" -selector unix:uid:1000
py entries "$OUT/create1.out" >"$OUT/create1.tsv"
assert_eq "entries printed by create" 1 "$(wc -l <"$OUT/create1.tsv")"
IFS=$'\t' read -r E1_ID E1_SPIFFE E1_PARENT E1_SELS E1_X509TTL E1_JWTTTL E1_REV <"$OUT/create1.tsv"
assert_match "entry ID" '^[A-Za-z0-9._-]{1,255}$' "$E1_ID"
assert_eq "SPIFFE ID" "$TD/workload" "$E1_SPIFFE"
assert_eq "parent ID" "$TD/spire/agent/x" "$E1_PARENT"
assert_eq "selectors" "unix:uid:1000" "$E1_SELS"
assert_eq "X509-SVID TTL" default "$E1_X509TTL"
assert_eq "JWT-SVID TTL" default "$E1_JWTTTL"
assert_eq "revision" 0 "$E1_REV"

step "spire-server entry create (-output json, more fields)"
spire_cli create2 entry create -parentID "$TD/spire/agent/y" -spiffeID "$TD/db" \
    -selector unix:uid:1001 -selector unix:gid:1001 -x509SVIDTTL 1800 -jwtSVIDTTL 120 -output json
py entries "$OUT/create2.out" >"$OUT/create2.tsv"
assert_eq "entries printed by create" 1 "$(wc -l <"$OUT/create2.tsv")"
IFS=$'\t' read -r E2_ID E2_SPIFFE E2_PARENT E2_SELS E2_X509TTL E2_JWTTTL E2_REV <"$OUT/create2.tsv"
assert_match "entry ID" '^[A-Za-z0-9._-]{1,255}$' "$E2_ID"
assert_ne "second entry ID" "$E1_ID" "$E2_ID"
assert_eq "SPIFFE ID" "$TD/db" "$E2_SPIFFE"
assert_eq "parent ID" "$TD/spire/agent/y" "$E2_PARENT"
assert_eq "selectors" "unix:gid:1001,unix:uid:1001" "$E2_SELS"
assert_eq "X509-SVID TTL" 1800 "$E2_X509TTL"
assert_eq "JWT-SVID TTL" 120 "$E2_JWTTTL"
assert_eq "revision" 0 "$E2_REV"
cat "$OUT/create1.tsv" "$OUT/create2.tsv" >"$OUT/created.tsv"

step "creating the same entry again is refused as AlreadyExists"
run_cli create-dup "$SPIRE_SERVER" entry create -socketPath "$SERVER_SOCK" \
    -parentID "$TD/spire/agent/x" -spiffeID "$TD/workload" -selector unix:uid:1000
[[ $CLI_RC -ne 0 ]] || fail "duplicate entry create succeeded"
assert_file_contains "duplicate create error" "code: AlreadyExists" "$OUT/create-dup.err"

step "spire-server entry show lists both entries (pretty and json agree)"
spire_cli show-all entry show
assert_eq "Found N entries" 2 "$(py count "$OUT/show-all.out")"
py entries "$OUT/show-all.out" >"$OUT/show-all.tsv"
assert_same_lines "entry show vs created" "$OUT/created.tsv" "$OUT/show-all.tsv"
spire_cli show-all-json entry show -output json
py entries "$OUT/show-all-json.out" >"$OUT/show-all-json.tsv"
assert_same_lines "entry show -output json vs created" "$OUT/created.tsv" "$OUT/show-all-json.tsv"

step "spire-server entry show filters: -spiffeID, -entryID, -parentID, -selector"
spire_cli show-by-spiffe entry show -spiffeID "$TD/workload"
py entries "$OUT/show-by-spiffe.out" >"$OUT/show-by-spiffe.tsv"
assert_same_lines "entry show -spiffeID $TD/workload" "$OUT/create1.tsv" "$OUT/show-by-spiffe.tsv"

spire_cli show-by-spiffe-none entry show -spiffeID "$TD/nobody"
assert_eq "entry show -spiffeID (no match) count" 0 "$(py count "$OUT/show-by-spiffe-none.out")"

spire_cli show-by-id entry show -entryID "$E2_ID"
py entries "$OUT/show-by-id.out" >"$OUT/show-by-id.tsv"
assert_same_lines "entry show -entryID $E2_ID" "$OUT/create2.tsv" "$OUT/show-by-id.tsv"

spire_cli_try show-by-id-missing entry show -entryID does-not-exist
[[ $CLI_RC -ne 0 ]] || fail "entry show -entryID of a missing entry succeeded"
assert_file_contains "missing entry error" "NotFound" "$OUT/show-by-id-missing.err"

spire_cli show-by-parent entry show -parentID "$TD/spire/agent/y"
py entries "$OUT/show-by-parent.out" >"$OUT/show-by-parent.tsv"
assert_same_lines "entry show -parentID $TD/spire/agent/y" "$OUT/create2.tsv" "$OUT/show-by-parent.tsv"

spire_cli show-by-selector entry show -selector unix:uid:1000
py entries "$OUT/show-by-selector.out" >"$OUT/show-by-selector.tsv"
assert_same_lines "entry show -selector unix:uid:1000" "$OUT/create1.tsv" "$OUT/show-by-selector.tsv"

spire_cli count-entries entry count
assert_match "entry count" '(^|[^0-9])2([^0-9]|$)' "$(cat "$OUT/count-entries.out")"

step "the server's own CLI sees the same entries"
own_cli own-show-all entry show
py entries "$OUT/own-show-all.out" >"$OUT/own-show-all.tsv"
assert_same_lines "own entry show vs spire-server entry show" "$OUT/show-all.tsv" "$OUT/own-show-all.tsv"
own_cli own-show-by-spiffe entry show --spiffe-id "$TD/workload"
py entries "$OUT/own-show-by-spiffe.out" >"$OUT/own-show-by-spiffe.tsv"
assert_same_lines "own entry show --spiffe-id" "$OUT/create1.tsv" "$OUT/own-show-by-spiffe.tsv"

step "spire-server token generate"
spire_cli token1 token generate
TOKEN1="$(py token "$OUT/token1.out")"
assert_match "join token" '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' "$TOKEN1"
spire_cli token2 token generate -ttl 300 -output json
TOKEN2="$(py token "$OUT/token2.out")"
assert_match "join token (json)" '^[0-9a-f-]{36}$' "$TOKEN2"
assert_ne "second token" "$TOKEN1" "$TOKEN2"
assert_eq "json token expires_at is set" yes \
    "$(py json-get "$OUT/token2.out" expires_at | awk -v now="$(date +%s)" '{ print ($1 > now + 200 && $1 <= now + 310) ? "yes" : "no (" $1 ")" }')"

step "token generate -spiffeID creates the join-token alias entry"
spire_cli token3 token generate -spiffeID "$TD/node-group"
TOKEN3="$(py token "$OUT/token3.out")"
TOKEN3_AGENT="$TD/spire/agent/join_token/$TOKEN3"
spire_cli show-token-entry entry show -parentID "$TOKEN3_AGENT"
py entries "$OUT/show-token-entry.out" >"$OUT/show-token-entry.tsv"
assert_eq "alias entries" 1 "$(wc -l <"$OUT/show-token-entry.tsv")"
IFS=$'\t' read -r E3_ID E3_SPIFFE E3_PARENT E3_SELS _ <"$OUT/show-token-entry.tsv"
assert_eq "alias SPIFFE ID" "$TD/node-group" "$E3_SPIFFE"
assert_eq "alias parent ID" "$TOKEN3_AGENT" "$E3_PARENT"
assert_eq "alias selector" "spiffe_id:$TOKEN3_AGENT" "$E3_SELS"
own_cli own-show-all-2 entry show
py entries "$OUT/own-show-all-2.out" >"$OUT/own-show-all-2.tsv"
cat "$OUT/created.tsv" "$OUT/show-token-entry.tsv" >"$OUT/expected-3.tsv"
assert_same_lines "own entry show after token generate" "$OUT/expected-3.tsv" "$OUT/own-show-all-2.tsv"

step "spire-server bundle show (pem): parses, is a CA for $TRUST_DOMAIN, self-verifies"
spire_cli bundle-pem bundle show
N_ROOTS="$(pem_count "$OUT/bundle-pem.out")"
((N_ROOTS >= 1)) || fail "bundle show printed no certificates"
info "bundle has $N_ROOTS X.509 authorit(y|ies)"
awk -v d="$OUT" '/-----BEGIN CERTIFICATE-----/ { n++; f = sprintf("%s/root-%d.pem", d, n) } n { print > f } /-----END CERTIFICATE-----/ { close(f) }' "$OUT/bundle-pem.out"
for i in $(seq "$N_ROOTS"); do
    root="$OUT/root-$i.pem"
    openssl x509 -in "$root" -noout -text >"$OUT/root-$i.txt" || fail "openssl cannot parse root $i"
    grep -A1 'X509v3 Basic Constraints' "$OUT/root-$i.txt" | grep -q 'CA:TRUE' || fail "root $i is not a CA"
    grep -A1 'Subject Alternative Name' "$OUT/root-$i.txt" | grep -qF "URI:$TD" || fail "root $i lacks URI SAN $TD"
    must "verify-root-$i" openssl verify -CAfile "$root" "$root"
done
info "ok: every root parses, is CA:TRUE with URI:$TD and verifies against itself"
pem_fingerprints "$OUT/bundle-pem.out" >"$OUT/fp-spire-pem.txt"

step "spire-server bundle show -format spiffe / -output json agree with the PEM"
spire_cli bundle-spiffe bundle show -format spiffe
py bundle-pem "$OUT/bundle-spiffe.out" >"$OUT/bundle-spiffe.pem"
pem_fingerprints "$OUT/bundle-spiffe.pem" >"$OUT/fp-spire-spiffe.txt"
assert_same_lines "X.509 authorities (spiffe format vs pem)" "$OUT/fp-spire-pem.txt" "$OUT/fp-spire-spiffe.txt"
py bundle-jwt "$OUT/bundle-spiffe.out" >"$OUT/jwt-kids.txt"
(($(wc -l <"$OUT/jwt-kids.txt") >= 1)) || fail "SPIFFE bundle has no jwt-svid key"
while read -r kid; do assert_match "JWT authority kid" '^.+$' "$kid"; done <"$OUT/jwt-kids.txt"
spire_cli bundle-json bundle show -output json
assert_eq "bundle trust_domain" "$TRUST_DOMAIN" "$(py json-get "$OUT/bundle-json.out" trust_domain)"
py bundle-json "$OUT/bundle-json.out" >"$OUT/bundle-json.pem"
pem_fingerprints "$OUT/bundle-json.pem" >"$OUT/fp-spire-json.txt"
assert_same_lines "X.509 authorities (json vs pem)" "$OUT/fp-spire-pem.txt" "$OUT/fp-spire-json.txt"

step "the server's own CLI shows the same bundle"
own_cli own-bundle bundle show
(($(pem_count "$OUT/own-bundle.out") >= 1)) || fail "own bundle show printed no PEM certificates"
pem_fingerprints "$OUT/own-bundle.out" >"$OUT/fp-own.txt"
assert_same_lines "own bundle show vs spire-server bundle show" "$OUT/fp-spire-pem.txt" "$OUT/fp-own.txt"
for i in $(seq "$N_ROOTS"); do
    must "own-verify-root-$i" openssl verify -CAfile "$OUT/own-bundle.out" "$OUT/root-$i.pem"
done

step "agent list agrees (no agents attested yet)"
spire_cli agent-list agent list
assert_eq "agents (spire-server agent list)" 0 "$(py count "$OUT/agent-list.out")"
spire_cli agent-list-json agent list -output json
py agents "$OUT/agent-list-json.out" >"$OUT/agents-spire.tsv"
own_cli own-agent-list agent list
py agents "$OUT/own-agent-list.out" >"$OUT/agents-own.tsv"
assert_same_lines "own agent list vs spire-server agent list" "$OUT/agents-spire.tsv" "$OUT/agents-own.tsv"

step "the server is still healthy"
is_running server || fail "server exited"
echo "PASS"

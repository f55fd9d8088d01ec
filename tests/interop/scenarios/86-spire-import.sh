#!/usr/bin/env bash
# Moving a running SPIRE deployment to Signet: the real spire-server v1.13.3 on sqlite with a
# disk KeyManager attests a real spire-agent that serves a workload; entries with every field,
# a federated bundle (and its federation relationship) and a spare join token exist. SPIRE is
# stopped, `signet-server import spire --config <SPIRE's server.conf>` carries its state over, and
# signet-server starts on the same address with the same file (DataStore "sled" instead of "sql").
# The spire-agent, never restarted, keeps syncing (a new entry reaches the workload) and rotating
# its own and the workload's SVIDs through signet-server; the new SVIDs verify against the new
# server's bundle and are signed by SPIRE's CA; `spire-server entry show` / `agent list` / `bundle
# show` against signet-server match what SPIRE showed; a JWT-SVID minted before the switch
# validates after it; the spare join token attests a second agent. Bad input (unsupported schema
# version, missing keys.json, non-empty target) is refused with one line and writes nothing.
# Signet only: with SERVER_IMPL=spire the scenario is skipped (it needs both servers).
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
source "$INTEROP_DIR/lib/server.sh"

if [[ "$SERVER_IMPL" != signet ]]; then
    info "skipped: the scenario moves from spire-server to signet-server (SERVER_IMPL=$SERVER_IMPL)"
    echo PASS
    exit 0
fi
require_bin "$SPIRE_SERVER" "$SPIRE_AGENT" "$SIGNET_SERVER"
TD="spiffe://$TRUST_DOMAIN"
UID_NOW="$(id -u)"
SWITCH_WINDOW="${SWITCH_WINDOW:-70}"

step "spire-server on sqlite + KeyManager disk, default_x509_svid_ttl = 40s"
SERVER_IMPL=spire write_server_conf "$WORKDIR/server" '    default_x509_svid_ttl = "40s"'
SPIRE_CONF="$SERVER_CONF"
SERVER_IMPL=spire start_server
spire_cli bootstrap bundle show
cp "$OUT/bootstrap.out" "$WORKDIR/bootstrap.pem"

step "join tokens, a federated bundle and relationship, entries with every field"
spire_cli token token generate -spiffeID "$TD/node-alias" -ttl 3600
TOKEN="$(py token "$OUT/token.out")"
AGENT_ID="$TD/spire/agent/join_token/$TOKEN"
spire_cli spare-token token generate -ttl 3600
SPARE_TOKEN="$(py token "$OUT/spare-token.out")"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /O=other \
    -addext "subjectAltName=URI:spiffe://other.org" \
    -keyout "$WORKDIR/other.key" -out "$WORKDIR/other.pem" 2>/dev/null
spire_cli fed-bundle bundle set -id spiffe://other.org -path "$WORKDIR/other.pem"
spire_cli fed-rel federation create -trustDomain other.org -bundleEndpointURL https://127.0.0.1:1/bundle -bundleEndpointProfile https_web
spire_cli e-full entry create -parentID "$AGENT_ID" -spiffeID "$TD/full" -selector "unix:uid:$UID_NOW" \
    -dns full.example.org -dns alt.example.org -x509SVIDTTL 40 -jwtSVIDTTL 600 -hint full-hint \
    -admin -downstream -entryExpiry 4102444800 -federatesWith spiffe://other.org
spire_cli e-alias entry create -parentID "$TD/node-alias" -spiffeID "$TD/via-alias" -selector "unix:uid:$UID_NOW"
spire_cli e-store entry create -parentID "$AGENT_ID" -spiffeID "$TD/stored" -selector "unix:uid:$((UID_NOW + 1))" -storeSVID
spire_cli e-updated entry create -parentID "$AGENT_ID" -spiffeID "$TD/updated" -selector "unix:uid:$((UID_NOW + 2))"
UPDATED_ID="$(awk -F': ' '/^Entry ID/ { print $2; exit }' "$OUT/e-updated.out")"
spire_cli e-update entry update -entryID "$UPDATED_ID" -parentID "$AGENT_ID" -spiffeID "$TD/updated" -selector "unix:uid:$((UID_NOW + 2))" -hint revised
assert_file_contains "updated entry" "Revision         : 1" "$OUT/e-update.out"

step "a spire-agent attests and serves the workload"
write_agent_conf "$WORKDIR/agent" "$WORKDIR/bootstrap.pem"
AGENT1_SOCK="$AGENT_SOCK"
start_bg agent "$SPIRE_AGENT" run -config "$AGENT_CONF" -joinToken "$TOKEN"
wait_for_log agent "Node attestation was successful" 60
wait_for_socket agent "$AGENT1_SOCK" 30
printf '%s\n' "$TD/full" "$TD/via-alias" >"$OUT/want-svids.txt"
deadline=$((SECONDS + 60))
until run_cli fetch "$SPIRE_AGENT" api fetch x509 -socketPath "$AGENT1_SOCK" -output json &&
    [[ $CLI_RC -eq 0 ]] && py svids "$OUT/fetch.out" >"$OUT/got.txt" && cmp -s "$OUT/want-svids.txt" "$OUT/got.txt"; do
    ((SECONDS < deadline)) || fail "the workload did not get its SVIDs from spire-server"
    sleep 2
done
must jwt-before "$SPIRE_AGENT" api fetch jwt -socketPath "$AGENT1_SOCK" -audience migration -spiffeID "$TD/full"
JWT_BEFORE="$(awk '/^token\(/ { getline; gsub(/[ \t]/, ""); print; exit }' "$OUT/jwt-before.out")"
[[ -n "$JWT_BEFORE" ]] || fail "no JWT-SVID from spire-agent"

step "what spire-server shows before the switch"
spire_cli entries-spire entry show -output json
py entries-full "$OUT/entries-spire.out" >"$WORKDIR/entries-spire.tsv"
(($(wc -l <"$WORKDIR/entries-spire.tsv") == 5)) || fail "want 5 entries (4 + the token alias), got $(wc -l <"$WORKDIR/entries-spire.tsv")"
spire_cli agents-spire agent list -output json
py agents "$OUT/agents-spire.out" >"$WORKDIR/agents-spire.tsv"
pem_fingerprints "$OUT/bootstrap.out" >"$WORKDIR/roots-spire.txt"
spire_cli bundle-spiffe-spire bundle show -format spiffe
py bundle-jwt "$OUT/bundle-spiffe-spire.out" | sort >"$WORKDIR/kids-spire.txt"
spire_cli fed-spire bundle list -format pem
pem_fingerprints "$OUT/fed-spire.out" >"$WORKDIR/fed-spire.txt"
CA_SKI="$(openssl x509 -in "$WORKDIR/bootstrap.pem" -noout -ext subjectKeyIdentifier | tail -n 1 | tr -d ' ')"
info "SPIRE's CA SKI: $CA_SKI"

step "stop spire-server (the spire-agent keeps running)"
stop_bg server
SWITCH_AT="$(date +%s)"
is_running agent || fail "spire-agent exited with the server"

step "bad input is refused with one line and writes nothing"
TARGET="$SERVER_DIR/data/datastore"
refused() { # refused <name> <expected text> <conf>
    must_fail "$1" "$SIGNET_SERVER" import spire --config "$3"
    assert_file_contains "$1" "$2" "$OUT/$1.err"
    assert_eq "$1: lines on stderr" 1 "$(wc -l <"$OUT/$1.err")"
    [[ ! -e "$TARGET" ]] || fail "$1: the target store $TARGET was created"
}
sed "s#$SERVER_DIR/keys.json#$SERVER_DIR/missing-keys.json#" "$SPIRE_CONF" >"$WORKDIR/no-keys.conf"
refused missing-keys "missing-keys.json: no such file" "$WORKDIR/no-keys.conf"
cp "$SERVER_DIR/data/datastore.sqlite3" "$WORKDIR/schema24.sqlite3"
python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("UPDATE migrations SET version = 24, code_version = ?", ("1.14.0",)); c.commit()' "$WORKDIR/schema24.sqlite3"
sed "s#$SERVER_DIR/data/datastore.sqlite3#$WORKDIR/schema24.sqlite3#" "$SPIRE_CONF" >"$WORKDIR/schema24.conf"
refused schema "has schema version 24 (SPIRE 1.14.0): only schema version 23 (SPIRE 1.8 to 1.13) can be imported" "$WORKDIR/schema24.conf"

step "signet-server import spire --config <SPIRE's server.conf>"
sha256sum "$SERVER_DIR/keys.json" "$SERVER_DIR/data/datastore.sqlite3" >"$WORKDIR/spire-files.sha"
must import "$SIGNET_SERVER" import spire --config "$SPIRE_CONF"
for want in "Registration entries: 5" "Agents: 1 (0 banned)" "Join tokens: 1" "Federated bundles: 1 (other.org)" \
    "X.509 authority: $(tr -d ':' <<<"$CA_SKI" | tr 'A-F' 'a-f') active" "Keys: $SERVER_DIR/keys.json (used in place)" \
    "1 federation relationship(s) not imported (other.org at https://127.0.0.1:1/bundle)"; do
    assert_file_contains "import report" "$want" "$OUT/import.out"
done
for kid in $(cat "$WORKDIR/kids-spire.txt"); do
    grep -qF "JWT authority: $kid active" "$OUT/import.out" && JWT_KID="$kid"
done
[[ -n "${JWT_KID:-}" ]] || fail "the import did not keep one of SPIRE's JWT kids active"
must spire-files-unchanged sha256sum -c "$WORKDIR/spire-files.sha"
must_fail again "$SIGNET_SERVER" import spire --config "$SPIRE_CONF"
assert_file_contains "second import" "already holds 5 registration entries, 1 agents, 2 bundles, a CA journal; nothing was imported (pass --force to import over it)" "$OUT/again.err"
assert_eq "second import: lines on stderr" 1 "$(wc -l <"$OUT/again.err")"
# (the store's content after the refused import is checked below: it is SPIRE's, entry by entry)

step "signet-server starts on the same address with the same file (DataStore \"sled\")"
SIGNET_CONF="$SERVER_DIR/signet-server.conf"
python3 - "$SPIRE_CONF" "$SIGNET_CONF" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
text, n = re.subn(r'DataStore "sql" \{.*?\n    \}', 'DataStore "sled" {\n        plugin_data {}\n    }', text, flags=re.S)
assert n == 1, "no DataStore block"
open(sys.argv[2], "w").write(text)
EOF
sed 's/^/  | /' "$SIGNET_CONF"
SERVER_CONF="$SIGNET_CONF"
start_server
info "switch took $(($(date +%s) - SWITCH_AT))s"

step "spire-server's CLI against signet-server shows SPIRE's entries, agent and bundle"
spire_cli entries-signet entry show -output json
py entries-full "$OUT/entries-signet.out" >"$WORKDIR/entries-signet.tsv"
assert_same_lines "entries (every field, same IDs and revisions)" "$WORKDIR/entries-spire.tsv" "$WORKDIR/entries-signet.tsv"
python3 -c 'import json, sys
f = lambda p: {e["id"]: e.get("created_at") for e in json.load(open(p))["entries"]}
a, b = f(sys.argv[1]), f(sys.argv[2])
print("created_at:", a)
sys.exit(a != b and f"created_at differs: spire {a} signet {b}")' "$OUT/entries-spire.out" "$OUT/entries-signet.out" ||
    fail "entry creation times differ (agents would refetch every entry)"
info "ok: entry creation times equal SPIRE's"
spire_cli agents-signet agent list -output json
py agents "$OUT/agents-signet.out" >"$WORKDIR/agents-signet.tsv"
assert_same_lines "agents" "$WORKDIR/agents-spire.tsv" "$WORKDIR/agents-signet.tsv"
spire_cli bundle-signet bundle show
pem_fingerprints "$OUT/bundle-signet.out" >"$WORKDIR/roots-signet.txt"
assert_same_lines "bundle roots" "$WORKDIR/roots-spire.txt" "$WORKDIR/roots-signet.txt"
spire_cli bundle-spiffe-signet bundle show -format spiffe
py bundle-jwt "$OUT/bundle-spiffe-signet.out" | sort >"$WORKDIR/kids-signet.txt"
assert_same_lines "bundle JWT kids" "$WORKDIR/kids-spire.txt" "$WORKDIR/kids-signet.txt"
spire_cli fed-signet bundle list -format pem
pem_fingerprints "$OUT/fed-signet.out" >"$WORKDIR/fed-signet.txt"
assert_same_lines "federated bundle" "$WORKDIR/fed-spire.txt" "$WORKDIR/fed-signet.txt"

step "the JWT-SVID minted by SPIRE before the switch validates after it"
spire_cli bundle-json bundle show -output json
mkdir -p "$WORKDIR/jwt-before"
printf '%s' "$JWT_BEFORE" >"$WORKDIR/jwt-before.txt"
py jwt "$WORKDIR/jwt-before.txt" "$OUT/bundle-json.out" "$WORKDIR/jwt-before" >"$OUT/jwt-before-decoded.txt"
read -r hdr <"$OUT/jwt-before-decoded.txt"
digest="${hdr##*digest=}"
must jwt-before-signature openssl dgst "-$digest" -verify "$WORKDIR/jwt-before/pub.pem" -signature "$WORKDIR/jwt-before/sig.der" "$WORKDIR/jwt-before/input.bin"
must jwt-before-validate "$SPIRE_AGENT" api validate jwt -socketPath "$AGENT1_SOCK" -audience migration -svid "$JWT_BEFORE"
assert_file_contains "validate" "SVID is valid" "$OUT/jwt-before-validate.out"

step "the running spire-agent syncs through signet-server: a new entry reaches the workload"
spire_cli e-new entry create -parentID "$AGENT_ID" -spiffeID "$TD/after-switch" -selector "unix:uid:$UID_NOW"
printf '%s\n' "$TD/after-switch" "$TD/full" "$TD/via-alias" >"$OUT/want-svids.txt"
deadline=$((SECONDS + 90))
until run_cli fetch-new "$SPIRE_AGENT" api fetch x509 -socketPath "$AGENT1_SOCK" -output json &&
    [[ $CLI_RC -eq 0 ]] && py svids "$OUT/fetch-new.out" >"$OUT/got.txt" && cmp -s "$OUT/want-svids.txt" "$OUT/got.txt"; do
    ((SECONDS < deadline)) || fail "the new entry did not reach the workload through the running spire-agent"
    sleep 2
done
info "ok: the workload got $TD/after-switch"

step "for ${SWITCH_WINDOW}s the agent rotates its own and the workload's SVIDs through signet-server"
rotations_before="$(grep -c "Successfully rotated agent SVID" "$LOGDIR/agent.log" || true)"
: >"$OUT/serials.txt"
n=0
end=$((SECONDS + SWITCH_WINDOW))
while ((SECONDS < end)); do
    n=$((n + 1))
    d="$WORKDIR/fetch/$n"
    mkdir -p "$d"
    must "fetch-$n" "$SPIRE_AGENT" api fetch x509 -socketPath "$AGENT1_SOCK" -write "$d"
    for svid in "$d"/svid.*.pem; do
        must "verify-$n" openssl verify -CAfile "$OUT/bundle-signet.out" -untrusted "$svid" "$svid"
        aki="$(openssl x509 -in "$svid" -noout -ext authorityKeyIdentifier | tail -n 1 | tr -d ' ' | sed 's/^keyid://')"
        assert_eq "issuer of fetch $n" "$CA_SKI" "$aki"
        nb="$(date -d "$(openssl x509 -in "$svid" -noout -startdate | cut -d= -f2)" +%s)"
        echo "$(openssl x509 -in "$svid" -noout -serial) $nb" >>"$OUT/serials.txt"
    done
    sleep 5
done
rotations_after="$(grep -c "Successfully rotated agent SVID" "$LOGDIR/agent.log" || true)"
new_svids="$(sort -u "$OUT/serials.txt" | awk -v t="$SWITCH_AT" '$2 + 10 > t' | wc -l)"
info "$n fetches; $new_svids workload SVIDs issued after the switch; agent SVID rotations: $rotations_before before the window, $rotations_after after"
((new_svids >= 4)) || fail "only $new_svids workload SVIDs were issued by signet-server in ${SWITCH_WINDOW}s with a 40s TTL"
((rotations_after >= rotations_before + 1)) || fail "the agent did not rotate its own SVID through signet-server"
is_running agent || fail "spire-agent exited"

step "a JWT-SVID minted after the switch carries SPIRE's kid"
must jwt-after "$SPIRE_AGENT" api fetch jwt -socketPath "$AGENT1_SOCK" -audience after -spiffeID "$TD/full"
JWT_AFTER="$(awk '/^token\(/ { getline; gsub(/[ \t]/, ""); print; exit }' "$OUT/jwt-after.out")"
printf '%s' "$JWT_AFTER" >"$WORKDIR/jwt-after.txt"
mkdir -p "$WORKDIR/jwt-after"
py jwt "$WORKDIR/jwt-after.txt" "$OUT/bundle-json.out" "$WORKDIR/jwt-after" >"$OUT/jwt-after-decoded.txt"
assert_file_contains "JWT after the switch" "kid=$JWT_KID " "$OUT/jwt-after-decoded.txt"

step "the imported spare join token attests a second spire-agent"
write_agent_conf "$WORKDIR/agent2" "$OUT/bundle-signet.out"
start_bg agent2 "$SPIRE_AGENT" run -config "$AGENT_CONF" -joinToken "$SPARE_TOKEN"
wait_for_log agent2 "Node attestation was successful" 60
spire_cli agents-final agent list -output json
py agents "$OUT/agents-final.out" >"$OUT/agents-final.tsv"
assert_file_contains "agent list" "$TD/spire/agent/join_token/$SPARE_TOKEN	join_token" "$OUT/agents-final.tsv"
assert_eq "agents after the second attestation" 2 "$(wc -l <"$OUT/agents-final.tsv")"

is_running server || fail "signet-server exited"
echo PASS

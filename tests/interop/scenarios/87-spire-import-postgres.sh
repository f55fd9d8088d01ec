#!/usr/bin/env bash
# `import spire` from SPIRE's PostgreSQL datastore: a throwaway PostgreSQL cluster (Debian's
# server binaries), the real spire-server v1.13.3 with `DataStore "sql" { database_type =
# "postgres" }` and a disk KeyManager; a real spire-agent attests, entries with every field and
# a federated bundle are created; spire-server is stopped; `signet-server import spire` reads the
# database through the connection string; signet-server started on the result shows, through the
# spire-server CLI, the same entries (every field, IDs, revisions), agents, roots and JWT kids,
# and the spire-agent (not restarted) gets an entry created after the switch. A database whose
# migrations table says schema 24 is refused with one line and writes nothing.
# Signet only: skipped with SERVER_IMPL=spire.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
source "$INTEROP_DIR/lib/server.sh"
source "$INTEROP_DIR/lib/postgres.sh"

if [[ "$SERVER_IMPL" != signet ]]; then
    info "skipped: the scenario moves from spire-server to signet-server (SERVER_IMPL=$SERVER_IMPL)"
    echo PASS
    exit 0
fi
require_bin "$SPIRE_SERVER" "$SPIRE_AGENT" "$SIGNET_SERVER"
TD="spiffe://$TRUST_DOMAIN"
UID_NOW="$(id -u)"

step "a throwaway PostgreSQL cluster"
start_postgres
CS="$PG_CS"

step "spire-server on PostgreSQL + KeyManager disk"
SERVER_IMPL=spire write_server_conf "$WORKDIR/server"
SPIRE_CONF="$SERVER_CONF"
use_postgres_datastore "$SPIRE_CONF" "$CS"
SERVER_IMPL=spire start_server
spire_cli bootstrap bundle show
cp "$OUT/bootstrap.out" "$WORKDIR/bootstrap.pem"

step "a join token, a federated bundle, entries with every field, an attested spire-agent"
spire_cli token token generate -spiffeID "$TD/node-alias" -ttl 3600
TOKEN="$(py token "$OUT/token.out")"
AGENT_ID="$TD/spire/agent/join_token/$TOKEN"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /O=other \
    -addext "subjectAltName=URI:spiffe://other.org" -keyout "$WORKDIR/other.key" -out "$WORKDIR/other.pem" 2>/dev/null
spire_cli fed-bundle bundle set -id spiffe://other.org -path "$WORKDIR/other.pem"
spire_cli e-full entry create -parentID "$AGENT_ID" -spiffeID "$TD/full" -selector "unix:uid:$UID_NOW" -selector unix:gid:0 \
    -dns full.example.org -dns alt.example.org -x509SVIDTTL 300 -jwtSVIDTTL 600 -hint full-hint \
    -admin -downstream -entryExpiry 4102444800 -federatesWith spiffe://other.org
spire_cli e-alias entry create -parentID "$TD/node-alias" -spiffeID "$TD/via-alias" -selector "unix:uid:$UID_NOW"
spire_cli e-store entry create -parentID "$AGENT_ID" -spiffeID "$TD/stored" -selector "unix:uid:$((UID_NOW + 1))" -storeSVID
write_agent_conf "$WORKDIR/agent" "$WORKDIR/bootstrap.pem"
start_bg agent "$SPIRE_AGENT" run -config "$AGENT_CONF" -joinToken "$TOKEN"
wait_for_log agent "Node attestation was successful" 60
wait_for_socket agent "$AGENT_SOCK" 30
wait_for "the workload's SVIDs from spire-server" 60 "$SPIRE_AGENT" api fetch x509 -socketPath "$AGENT_SOCK"
spire_cli entries-spire entry show -output json
py entries-full "$OUT/entries-spire.out" >"$WORKDIR/entries-spire.tsv"
(($(wc -l <"$WORKDIR/entries-spire.tsv") == 4)) || fail "want 4 entries, got $(wc -l <"$WORKDIR/entries-spire.tsv")"
spire_cli agents-spire agent list -output json
py agents "$OUT/agents-spire.out" >"$WORKDIR/agents-spire.tsv"
pem_fingerprints "$WORKDIR/bootstrap.pem" >"$WORKDIR/roots-spire.txt"
spire_cli bundle-spiffe-spire bundle show -format spiffe
py bundle-jwt "$OUT/bundle-spiffe-spire.out" | sort >"$WORKDIR/kids-spire.txt"

step "stop spire-server; a database of another schema version is refused"
stop_bg server
TARGET="$SERVER_DIR/data/datastore"
psql_do schema24 postgres "UPDATE migrations SET version = 24, code_version = '1.14.0'"
must_fail import-24 "$SIGNET_SERVER" import spire --config "$SPIRE_CONF"
assert_file_contains "refusal" "postgres database \"postgres\" on 127.0.0.1 has schema version 24 (SPIRE 1.14.0): only schema version 23" "$OUT/import-24.err"
assert_eq "refusal: lines on stderr" 1 "$(wc -l <"$OUT/import-24.err")"
[[ ! -e "$TARGET" ]] || fail "the refused import created $TARGET"
psql_do schema23 postgres "UPDATE migrations SET version = 23, code_version = '1.13.3'"

step "signet-server import spire reads the PostgreSQL datastore"
must import "$SIGNET_SERVER" import spire --config "$SPIRE_CONF"
for want in "Imported SPIRE datastore postgres database \"postgres\" on 127.0.0.1 into $TARGET" \
    "Registration entries: 4" "Agents: 1 (0 banned)" "Federated bundles: 1 (other.org)"; do
    assert_file_contains "import report" "$want" "$OUT/import.out"
done

step "signet-server on the result, same address, DataStore \"sled\""
SIGNET_CONF="$SERVER_DIR/signet-server.conf"
python3 - "$SPIRE_CONF" "$SIGNET_CONF" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
text, n = re.subn(r'DataStore "sql" \{.*?\n    \}', 'DataStore "sled" {\n        plugin_data {}\n    }', text, flags=re.S)
assert n == 1
open(sys.argv[2], "w").write(text)
EOF
SERVER_CONF="$SIGNET_CONF"
start_server
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

step "the running spire-agent syncs through signet-server"
spire_cli e-new entry create -parentID "$AGENT_ID" -spiffeID "$TD/after-switch" -selector "unix:uid:$UID_NOW"
deadline=$((SECONDS + 90))
until run_cli fetch "$SPIRE_AGENT" api fetch x509 -socketPath "$AGENT_SOCK" -output json &&
    [[ $CLI_RC -eq 0 ]] && py svids "$OUT/fetch.out" | grep -qxF "$TD/after-switch"; do
    ((SECONDS < deadline)) || fail "the entry created after the switch did not reach the workload"
    sleep 2
done
info "ok: the workload got $TD/after-switch through the running spire-agent"
is_running server || fail "signet-server exited"
echo PASS

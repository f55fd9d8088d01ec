#!/usr/bin/env bash
# High availability with SPIRE's own binaries: two signet-servers (own data dirs, CA keys and
# ports) on one throwaway PostgreSQL database. The real `spire-server` CLI works against either
# admin socket: a join token generated through A, `bundle show` on both listing both servers'
# roots (each server's serving certificate chains to one of them), an entry created through B,
# `entry show` and `agent list` equal on both. A real spire-agent attests with the token through
# A; its workload (another uid) gets the SVID of the entry made through B, and that SVID (signed
# by A) verifies with B's bundle. Then A is killed (SIGKILL) and spire-agent restarted with
# `server_port` of B: it loads its stored agent SVID (no second attestation; it has no token),
# syncs through B, an entry created through B afterwards reaches the workload, and the SVIDs
# fetched then (signed by B) verify with openssl against the bundle B shows.
# Signet only: skipped with SERVER_IMPL=spire.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
source "$INTEROP_DIR/lib/server.sh"
source "$INTEROP_DIR/lib/postgres.sh"

if [[ "$SERVER_IMPL" != signet ]]; then
    info "skipped: two signet-servers on one PostgreSQL (SERVER_IMPL=$SERVER_IMPL)"
    echo PASS
    exit 0
fi
require_bin "$SPIRE_SERVER" "$SPIRE_AGENT" "$SIGNET_SERVER"
TD="spiffe://$TRUST_DOMAIN"

step "a throwaway PostgreSQL cluster and one database"
start_postgres
psql_do createdb postgres "CREATE DATABASE signet_ha"
CS="${PG_CS/dbname=postgres/dbname=signet_ha}"

step "two signet-servers on the database, each with its own data dir, CA keys and port"
write_server_conf "$WORKDIR/a"
use_postgres_datastore "$SERVER_CONF" "$CS"
A_CONF="$SERVER_CONF" A_SOCK="$SERVER_SOCK" A_PORT="$SERVER_PORT" A_DIR="$SERVER_DIR"
start_server server-a
write_server_conf "$WORKDIR/b"
use_postgres_datastore "$SERVER_CONF" "$CS"
B_CONF="$SERVER_CONF" B_SOCK="$SERVER_SOCK" B_PORT="$SERVER_PORT" B_DIR="$SERVER_DIR"
start_server server-b
[[ "$A_DIR" != "$B_DIR" && "$A_PORT" != "$B_PORT" && "$A_CONF" != "$B_CONF" ]] || fail "the servers share a directory or port"
# cli <A|B> <name> <spire-server words and flags...>: the real spire-server CLI on that server.
cli() {
    local sock
    case "$1" in A) sock="$A_SOCK" ;; B) sock="$B_SOCK" ;; *) fail "cli: no server $1" ;; esac
    must "$2" "$SPIRE_SERVER" "${@:3}" -socketPath "$sock"
}
cli A health-a healthcheck
cli B health-b healthcheck
[[ -s "$A_DIR/keys.json" && -s "$B_DIR/keys.json" ]] || fail "a server wrote no keys.json"
cmp -s "$A_DIR/keys.json" "$B_DIR/keys.json" && fail "both servers hold the same CA keys"
info "ok: each server has its own keys.json"
# Each keeps its own CA journal in the database (data_dir/server_id); reading another's would
# drop its entries ("its key is gone") and overwrite them.
if grep -F "Dropping journal entry" "$LOGDIR/server-a.log" "$LOGDIR/server-b.log"; then
    fail "a server read the other's CA journal"
fi

step "bundle show on either server lists both servers' roots"
# skis <pem file>: the subject key IDs of its certificates, lowercase hex, sorted.
skis() {
    local tmp c
    tmp="$(mktemp -d "$WORKDIR/skis.XXXX")"
    awk -v d="$tmp" '/-----BEGIN CERTIFICATE-----/ { n++; f = sprintf("%s/%03d.pem", d, n) } n { print > f } /-----END CERTIFICATE-----/ { close(f) }' "$1"
    for c in "$tmp"/*.pem; do
        [[ -e "$c" ]] || continue
        openssl x509 -in "$c" -noout -ext subjectKeyIdentifier | tail -n +2 | tr -d ' :' | tr 'A-F' 'a-f'
    done | sort
}
cli A bundle-a bundle show
cli B bundle-b bundle show
cp "$OUT/bundle-a.out" "$WORKDIR/bundle-a.pem"
cp "$OUT/bundle-b.out" "$WORKDIR/bundle-b.pem"
assert_eq "roots in A's bundle" 2 "$(pem_count "$WORKDIR/bundle-a.pem")"
pem_fingerprints "$WORKDIR/bundle-a.pem" >"$WORKDIR/roots-a.txt"
pem_fingerprints "$WORKDIR/bundle-b.pem" >"$WORKDIR/roots-b.txt"
assert_same_lines "roots shown by A and by B" "$WORKDIR/roots-a.txt" "$WORKDIR/roots-b.txt"
skis "$WORKDIR/bundle-b.pem" >"$WORKDIR/bundle-skis.txt"
# Each server's own CA: the issuer of the certificate it serves on its agent port.
for s in a b; do
    port="$A_PORT"
    [[ $s == b ]] && port="$B_PORT"
    openssl s_client -connect "127.0.0.1:$port" -alpn h2 </dev/null 2>"$OUT/s_client-$s.err" |
        openssl x509 >"$WORKDIR/serving-$s.pem" 2>>"$OUT/s_client-$s.err" ||
        fail "no serving certificate from server $s: $(cat "$OUT/s_client-$s.err")"
    declare "CA_$s=$(aki_of "$WORKDIR/serving-$s.pem")"
done
info "server A's CA key ID $CA_a, server B's $CA_b"
assert_ne "the servers' CAs" "$CA_a" "$CA_b"
grep -qxF "$CA_a" "$WORKDIR/bundle-skis.txt" || fail "server A's root ($CA_a) is not in B's bundle: $(cat "$WORKDIR/bundle-skis.txt")"
grep -qxF "$CA_b" "$WORKDIR/bundle-skis.txt" || fail "server B's root ($CA_b) is not in B's bundle"
info "ok: the bundle (same through A and B) holds server A's root and server B's root"

step "a join token through A; an entry through B; entry show and agent list agree on both"
cli A token token generate -ttl 600
TOKEN="$(py token "$OUT/token.out")"
AGENT_ID="$TD/spire/agent/join_token/$TOKEN"
if [[ "$(id -u)" == 0 ]] && command -v setpriv >/dev/null; then
    WL_UID=54327
    as_wl=(setpriv --reuid "$WL_UID" --regid "$WL_UID" --clear-groups --)
else
    WL_UID="$(id -u)"
    as_wl=()
fi
cli B e-via-b entry create -parentID "$AGENT_ID" -spiffeID "$TD/ha/via-b" -selector "unix:uid:$WL_UID"

SERVER_PORT="$A_PORT" write_agent_conf "$WORKDIR/agent" "$WORKDIR/bundle-a.pem"
# A disk KeyManager: the restarted agent must find the key of its stored SVID.
python3 - "$AGENT_CONF" "$WORKDIR/agent/data" <<'EOF'
import sys
text = open(sys.argv[1]).read()
old = 'KeyManager "memory" {\n        plugin_data {}\n    }'
assert old in text
text = text.replace(old, 'KeyManager "disk" {\n        plugin_data {\n            directory = "%s"\n        }\n    }' % sys.argv[2])
open(sys.argv[1], "w").write(text)
EOF
sed 's/^/  | /' "$AGENT_CONF"
grep -qF "server_port = $A_PORT" "$AGENT_CONF" || fail "the agent config does not name server A"
start_bg agent "$SPIRE_AGENT" run -config "$AGENT_CONF" -joinToken "$TOKEN"
wait_for_log agent "Node attestation was successful" 60
wait_for_socket agent "$AGENT_SOCK" 30

# compare_json <what> <file a> <file b> <key>: the two documents' <key> lists are equal
# (order-insensitive), every field.
compare_json() {
    python3 - "$2" "$3" "$4" <<'EOF' || fail "$1: A and B differ"
import json, sys
a, b = (sorted((json.dumps(x, sort_keys=True) for x in json.load(open(p)).get(sys.argv[3]) or [])) for p in sys.argv[1:3])
if a != b:
    print("A:", *a, "B:", *b, sep="\n", file=sys.stderr)
    sys.exit(1)
print(f"{len(a)} {sys.argv[3]} equal")
EOF
    info "ok: $1"
}
for s in A B; do
    cli "$s" "entries-$s" entry show -output json
    py entries-full "$OUT/entries-$s.out" >"$WORKDIR/entries-$s.tsv"
    cli "$s" "agents-$s" agent list -output json
    py agents "$OUT/agents-$s.out" >"$WORKDIR/agents-$s.tsv"
done
assert_eq "entries" 1 "$(wc -l <"$WORKDIR/entries-A.tsv")"
assert_same_lines "entry show on A and B" "$WORKDIR/entries-A.tsv" "$WORKDIR/entries-B.tsv"
compare_json "entry show -output json on A and B" "$OUT/entries-A.out" "$OUT/entries-B.out" entries
assert_eq "agents" "$AGENT_ID	join_token	false	false" "$(cat "$WORKDIR/agents-A.tsv")"
assert_same_lines "agent list on A and B" "$WORKDIR/agents-A.tsv" "$WORKDIR/agents-B.tsv"
compare_json "agent list -output json on A and B" "$OUT/agents-A.out" "$OUT/agents-B.out" agents

step "the workload (uid $WL_UID) gets the entry made through B from spire-agent on A"
# wait_ids <what> <ids, newline-separated>: until the workload is served exactly these IDs.
wait_ids() {
    local deadline=$((SECONDS + 60)) got=""
    while :; do
        run_cli fetch "${as_wl[@]}" "$SPIRE_AGENT" api fetch x509 -socketPath "$AGENT_SOCK" -output json
        got=""
        [[ $CLI_RC -ne 0 ]] || got="$(py svids "$OUT/fetch.out")"
        [[ "$got" != "$2" ]] || break
        ((SECONDS < deadline)) || fail "$1: the workload is served [$got], want [$2]"
        sleep 1
    done
    info "ok: $1: the workload is served [$(tr '\n' ' ' <<<"$got")]"
}
# fetch_to <dir>: the workload's SVIDs, bundle and keys written by spire-agent into <dir>.
fetch_to() {
    mkdir -p "$1"
    [[ ${#as_wl[@]} -eq 0 ]] || chown "$WL_UID:$WL_UID" "$1"
    must "fetch-$(basename "$1")" "${as_wl[@]}" "$SPIRE_AGENT" api fetch x509 -socketPath "$AGENT_SOCK" -write "$1"
}
wait_ids "entry through B, agent on A" "$TD/ha/via-b"
fetch_to "$WORKDIR/svids-a"
must verify-from-a openssl verify -CAfile "$WORKDIR/bundle-b.pem" -untrusted "$WORKDIR/svids-a/svid.0.pem" "$WORKDIR/svids-a/svid.0.pem"
assert_eq "the SVID's issuer (server A's CA)" "$CA_a" "$(aki_of "$WORKDIR/svids-a/svid.0.pem")"
info "ok: the SVID signed by A verifies with the bundle shown by B"
as_other=()
[[ ${#as_wl[@]} -eq 0 ]] || as_other=(setpriv --reuid "$((WL_UID + 1))" --regid "$((WL_UID + 1))" --clear-groups --)
if [[ ${#as_other[@]} -gt 0 ]]; then
    run_cli other-uid "${as_other[@]}" "$SPIRE_AGENT" api fetch x509 -socketPath "$AGENT_SOCK" -timeout 3s
    [[ $CLI_RC -ne 0 ]] || fail "uid $((WL_UID + 1)) was served an SVID"
    info "ok: another uid gets nothing"
fi

step "server A killed; spire-agent restarted with server_port of B, without a token"
kill -KILL "$PID_server_a"
wait "$PID_server_a" 2>/dev/null || true
stop_bg server-a
is_running server-a && fail "server A still runs"
run_cli a-dead "$SPIRE_SERVER" healthcheck -socketPath "$A_SOCK"
[[ $CLI_RC -ne 0 ]] || fail "server A still answers"
stop_bg agent
# spire-agent keeps its SVID in <data_dir>/agent-data.json: "svid" is a list of base64 strings
# (PEM certificates in v1.13.3; DER is accepted too).
python3 - "$WORKDIR/agent/data/agent-data.json" "$WORKDIR/agent-svid.pem" <<'EOF' || fail "spire-agent stored no agent SVID in its data dir"
import base64, json, sys, textwrap
raw = base64.b64decode(json.load(open(sys.argv[1]))["svid"][0])
if not raw.startswith(b"-----BEGIN"):
    b64 = base64.b64encode(raw).decode()
    raw = ("-----BEGIN CERTIFICATE-----\n" + "\n".join(textwrap.wrap(b64, 64)) + "\n-----END CERTIFICATE-----\n").encode()
open(sys.argv[2], "wb").write(raw)
EOF
assert_eq "the stored agent SVID's issuer (server A's CA)" "$CA_a" "$(aki_of "$WORKDIR/agent-svid.pem")"
sed -i "s/server_port = $A_PORT\$/server_port = $B_PORT/" "$AGENT_CONF"
grep -qF "server_port = $B_PORT" "$AGENT_CONF" || fail "the agent config does not name server B"
start_bg agent-b "$SPIRE_AGENT" run -config "$AGENT_CONF"
wait_for_log agent-b "SVID loaded" 60
wait_for_socket agent-b "$AGENT_SOCK" 30
if grep -E "Node attestation was successful|SVID is not found|Generating new keypair" "$LOGDIR/agent-b.log"; then
    fail "the restarted spire-agent did not reuse its stored SVID"
fi
grep -F "SVID loaded" "$LOGDIR/agent-b.log" >"$OUT/svid-loaded.txt"
assert_file_contains "the restarted agent's \"SVID loaded\"" "$AGENT_ID" "$OUT/svid-loaded.txt"

step "spire-agent syncs through B: an entry created through B now reaches the workload"
wait_ids "after the restart, through B" "$TD/ha/via-b"
cli B e-after entry create -parentID "$AGENT_ID" -spiffeID "$TD/ha/after-failover" -selector "unix:uid:$WL_UID"
wait_ids "entry created through B after A died" "$(printf '%s\n' "$TD/ha/after-failover" "$TD/ha/via-b" | sort)"
cli B bundle-b2 bundle show
cp "$OUT/bundle-b2.out" "$WORKDIR/bundle-b2.pem"
fetch_to "$WORKDIR/svids-b"
n=0
for svid in "$WORKDIR"/svids-b/svid.*.pem; do
    must "verify-b-$n" openssl verify -CAfile "$WORKDIR/bundle-b2.pem" -untrusted "$svid" "$svid"
    assert_eq "issuer of $(basename "$svid") (server B's CA)" "$CA_b" "$(aki_of "$svid")"
    n=$((n + 1))
done
assert_eq "SVIDs fetched through B" 2 "$n"
cli B agents-after agent list -output json
py agents "$OUT/agents-after.out" >"$WORKDIR/agents-after.tsv"
assert_same_lines "agents after the switch (the same one, no new attestation)" "$WORKDIR/agents-A.tsv" "$WORKDIR/agents-after.tsv"
is_running server-b || fail "server B exited"
is_running agent-b || fail "spire-agent exited"
echo PASS

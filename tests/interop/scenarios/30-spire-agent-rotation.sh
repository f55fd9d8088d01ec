#!/usr/bin/env bash
# Rotation with a real `spire-agent`: the server under test runs with ca_ttl = 1m and
# default_x509_svid_ttl = 10s (agent SVIDs then live 10s too). For ~80s a workload fetches its
# X509-SVID every 3s; every fetch must succeed and verify against the bundle served with it, the
# SVID must keep changing, and the CA must rotate (new issuer, bundle briefly holds two roots).
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
source "$INTEROP_DIR/lib/server.sh"

require_bin "$SPIRE_SERVER" "$SPIRE_AGENT"
TD="spiffe://$TRUST_DOMAIN"
DURATION="${ROTATION_SECONDS:-80}"

step "start the server under test ($SERVER_IMPL) with ca_ttl=1m, default_x509_svid_ttl=10s"
write_server_conf "$WORKDIR/server" '    ca_ttl = "1m"
    default_x509_svid_ttl = "10s"'
start_server
spire_cli bootstrap bundle show
cp "$OUT/bootstrap.out" "$WORKDIR/bootstrap.pem"

step "attest a spire-agent and register the workload"
spire_cli token token generate
TOKEN="$(py token "$OUT/token.out")"
spire_cli entry entry create -parentID "$TD/spire/agent/join_token/$TOKEN" -spiffeID "$TD/rotating" -selector "unix:uid:$(id -u)"
write_agent_conf "$WORKDIR/agent" "$WORKDIR/bootstrap.pem"
start_bg agent "$SPIRE_AGENT" run -config "$AGENT_CONF" -joinToken "$TOKEN"
wait_for_log agent "Node attestation was successful" 60
wait_for_socket agent "$AGENT_SOCK" 30
wait_for "first SVID" 60 "$SPIRE_AGENT" api fetch x509 -socketPath "$AGENT_SOCK"

step "fetch every 3s for ${DURATION}s; each SVID verifies against the bundle it came with"
: >"$OUT/serials.txt"; : >"$OUT/issuers.txt"; : >"$OUT/roots.txt"
max_roots=0
n=0
end=$((SECONDS + DURATION))
while ((SECONDS < end)); do
    n=$((n + 1))
    d="$WORKDIR/fetch/$n"
    mkdir -p "$d"
    if ! "$SPIRE_AGENT" api fetch x509 -socketPath "$AGENT_SOCK" -write "$d" >"$d/out.txt" 2>&1; then
        cat "$d/out.txt"
        fail "fetch #$n at t+${SECONDS}s failed"
    fi
    openssl verify -CAfile "$d/bundle.0.pem" -untrusted "$d/svid.0.pem" "$d/svid.0.pem" >"$d/verify.txt" 2>&1 ||
        { cat "$d/verify.txt"; fail "fetch #$n: SVID does not verify against its bundle"; }
    uri="$(openssl x509 -in "$d/svid.0.pem" -noout -ext subjectAltName | grep -o 'URI:[^,]*')"
    [[ "$uri" == "URI:$TD/rotating" ]] || fail "fetch #$n: unexpected URI SAN [$uri]"
    serial="$(openssl x509 -in "$d/svid.0.pem" -noout -serial)"
    issuer="$(openssl x509 -in "$d/svid.0.pem" -noout -ext authorityKeyIdentifier | tail -n +2 | tr -d ' ')"
    roots="$(pem_count "$d/bundle.0.pem")"
    ((roots > max_roots)) && max_roots=$roots
    echo "$serial" >>"$OUT/serials.txt"
    echo "$issuer" >>"$OUT/issuers.txt"
    pem_fingerprints "$d/bundle.0.pem" >>"$OUT/roots.txt"
    printf -- '--- t+%3ds fetch #%d ok: %s issuer %s, bundle has %d root(s)\n' "$SECONDS" "$n" "$serial" "$issuer" "$roots"
    sleep 3
done

step "the SVID and the CA rotated"
svids="$(sort -u "$OUT/serials.txt" | wc -l)"
issuers="$(sort -u "$OUT/issuers.txt" | wc -l)"
roots_seen="$(sort -u "$OUT/roots.txt" | wc -l)"
info "$n fetches, $svids distinct SVIDs, $issuers distinct issuers, $roots_seen distinct roots, at most $max_roots root(s) at once"
((svids >= 5)) || fail "only $svids distinct SVIDs in ${DURATION}s with a 10s TTL"
((issuers >= 2)) || fail "the X509 CA never rotated in ${DURATION}s with ca_ttl=1m"
((max_roots >= 2)) || fail "the bundle never held the next CA next to the current one"
is_running agent || fail "agent exited"
is_running server || fail "server exited"
echo PASS

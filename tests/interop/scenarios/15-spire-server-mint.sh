#!/usr/bin/env bash
# `spire-server x509 mint` and `jwt mint` against the server under test: the minted X509-SVID
# chains to the bundle and carries the requested SPIFFE ID / DNS name / TTL; the minted JWT-SVID
# is signed by a JWT authority of the bundle (checked with openssl) with the requested claims.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
source "$INTEROP_DIR/lib/server.sh"

require_bin "$SPIRE_SERVER"
TD="spiffe://$TRUST_DOMAIN"

step "start the server under test ($SERVER_IMPL)"
write_server_conf "$WORKDIR/server"
start_server
spire_cli bundle bundle show
spire_cli bundle-json bundle show -output json

step "spire-server x509 mint"
mkdir -p "$WORKDIR/x509"
spire_cli x509 x509 mint -spiffeID "$TD/minted" -dns minted.example.org -ttl 30m -write "$WORKDIR/x509"
SVID="$WORKDIR/x509/svid.pem"
must verify-minted openssl verify -CAfile "$OUT/bundle.out" -untrusted "$SVID" "$SVID"
openssl x509 -in "$SVID" -noout -text >"$OUT/minted.txt"
assert_file_contains "minted SVID" "URI:$TD/minted" "$OUT/minted.txt"
assert_file_contains "minted SVID" "DNS:minted.example.org" "$OUT/minted.txt"
assert_file_contains "minted SVID" "CA:FALSE" "$OUT/minted.txt"
must key-match bash -c "diff <(openssl x509 -in '$SVID' -noout -pubkey) <(openssl pkey -in '$WORKDIR/x509/key.pem' -pubout)"
not_after="$(date -d "$(openssl x509 -in "$SVID" -noout -enddate | cut -d= -f2)" +%s)"
left=$((not_after - $(date +%s)))
((left > 1500 && left <= 1800)) || fail "minted SVID expires in ${left}s, want ~1800s"
info "ok: minted SVID expires in ${left}s"
pem_fingerprints "$WORKDIR/x509/bundle.pem" >"$OUT/fp-mint-bundle.txt"
pem_fingerprints "$OUT/bundle.out" >"$OUT/fp-bundle.txt"
assert_same_lines "roots returned by mint vs bundle show" "$OUT/fp-bundle.txt" "$OUT/fp-mint-bundle.txt"

step "spire-server jwt mint"
spire_cli jwt jwt mint -spiffeID "$TD/minted" -audience aud-1 -audience aud-2 -ttl 2m
mkdir -p "$WORKDIR/jwt"
py jwt "$OUT/jwt.out" "$OUT/bundle-json.out" "$WORKDIR/jwt" >"$OUT/jwt-decoded.txt"
cat "$OUT/jwt-decoded.txt"
read -r hdr <"$OUT/jwt-decoded.txt"
assert_match "JWT header" '^alg=(ES256|ES384|RS256) kid=.+ typ=JWT digest=sha(256|384)$' "$hdr"
digest="${hdr##*digest=}"
must jwt-signature openssl dgst "-$digest" -verify "$WORKDIR/jwt/pub.pem" -signature "$WORKDIR/jwt/sig.der" "$WORKDIR/jwt/input.bin"
claims="$(sed -n 2p "$OUT/jwt-decoded.txt")"
printf '%s' "$claims" >"$OUT/claims.json"
assert_eq "sub" "$TD/minted" "$(py json-get "$OUT/claims.json" sub)"
assert_eq "aud" '["aud-1", "aud-2"]' "$(py json-get "$OUT/claims.json" aud)"
exp="$(py json-get "$OUT/claims.json" exp)"
left=$((exp - $(date +%s)))
((left > 60 && left <= 120)) || fail "minted JWT-SVID expires in ${left}s, want ~120s"
info "ok: JWT-SVID signed by a bundle JWT authority, expires in ${left}s"

is_running server || fail "server exited"
echo PASS

#!/usr/bin/env bash
# Built-in OIDC discovery (server.oidc_discovery) against an OIDC relying party nobody here
# wrote: PyJWT's PyJWKClient, found through the discovery document over HTTPS that trusts only
# a test CA. A JWT-SVID fetched from signet-agent (its own CLI, over the Workload API)
# verifies (signature by kid, aud, iss = jwt_issuer, sub); with a short ca_ttl the JWT key
# rotates and the SAME client keeps verifying new JWT-SVIDs signed by the new key. Then the
# serving certificate files are replaced by one from another CA: the listener serves it within
# seconds, without a restart. Signet only (SPIRE needs its separate oidc-discovery-provider).
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
source "$INTEROP_DIR/lib/server.sh"
source "$INTEROP_DIR/lib/agent.sh"

[[ "$SERVER_IMPL" == signet ]] || { echo "SKIP: Signet's built-in OIDC discovery only"; echo PASS; exit 0; }
require_bin "$SIGNET_SERVER" "$SIGNET_AGENT" "$PYENV_PY"
TD="spiffe://$TRUST_DOMAIN"
WL_ID="$TD/oidc/uid-$(id -u)"
OIDC_PORT="$(free_port)"
ISSUER="https://127.0.0.1:$OIDC_PORT"

step "a test web PKI: CA 1 and a certificate for 127.0.0.1 (openssl)"
pki="$WORKDIR/pki"
mkdir -p "$pki"
issue() { # issue <ca name>: a CA and a server cert for 127.0.0.1 signed by it, into serving.*
    local ca="$1"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=$ca test CA" -keyout "$pki/$ca.key" -out "$pki/$ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
        -keyout "$pki/next.key" -out "$pki/next.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\n' >"$pki/ext.cnf"
    openssl x509 -req -in "$pki/next.csr" -CA "$pki/$ca.pem" -CAkey "$pki/$ca.key" \
        -CAcreateserial -days 1 -extfile "$pki/ext.cnf" -out "$pki/next.pem" 2>/dev/null
    # key first, then the certificate: the listener keeps the old pair until both match
    mv "$pki/next.key" "$pki/serving.key"
    mv "$pki/next.pem" "$pki/serving.pem"
}
issue ca1

step "start signet-server with oidc_discovery on $ISSUER and a 40s ca_ttl"
write_server_conf "$WORKDIR/server" "    jwt_issuer = \"$ISSUER\"
    ca_ttl = \"40s\"
    default_x509_svid_ttl = \"6s\"
    default_jwt_svid_ttl = \"6s\"
    oidc_discovery {
        address = \"127.0.0.1\"
        port = $OIDC_PORT
        serving_cert_file {
            cert_file_path = \"$pki/serving.pem\"
            key_file_path = \"$pki/serving.key\"
            file_sync_interval = \"1s\"
        }
    }"
start_server
own_cli bootstrap bundle show
cp "$OUT/bootstrap.out" "$WORKDIR/bootstrap.pem"

step "join token, an entry for uid $(id -u), signet-agent"
own_cli token token generate
TOKEN="$(py token "$OUT/token.out")"
AGENT_ID="$TD/spire/agent/join_token/$TOKEN"
own_cli entry entry create --parent-id "$AGENT_ID" --spiffe-id "$WL_ID" --selector "unix:uid:$(id -u)"
write_agent_conf "$WORKDIR/agent" "$WORKDIR/bootstrap.pem"
AGENT_IMPL=signet start_agent agent "$TOKEN"

step "PyJWKClient from the discovery document verifies JWT-SVIDs from two JWT keys (a rotation)"
must pyjwt "$PYENV_PY" "$INTEROP_DIR/py/oidc_check.py" verify -issuer "$ISSUER" -cafile "$pki/ca1.pem" \
    -audience oidc-rp -expect "$WL_ID" -kids 2 -timeout 120 -- \
    "$SIGNET_AGENT" api fetch jwt --socket-path "$AGENT_SOCK" --audience oidc-rp
assert_file_contains "pyjwt" "Verified JWT-SVIDs from 2 keys" "$OUT/pyjwt.out"

step "the certificate files are replaced (CA 2): served without a restart"
issue ca2
must tls "$PYENV_PY" "$INTEROP_DIR/py/oidc_check.py" tls -url "$ISSUER/keys" -cafile "$pki/ca2.pem" -timeout 20
must_fail tls-old "$PYENV_PY" "$INTEROP_DIR/py/oidc_check.py" tls -url "$ISSUER/keys" -cafile "$pki/ca1.pem" -timeout 1
is_running server || fail "server exited"
echo PASS

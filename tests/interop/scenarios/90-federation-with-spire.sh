#!/usr/bin/env bash
# Federation between a real spire-server (trust domain a.test) and signet-server (b.test)
# through their bundle endpoints, set up only with the federation CLIs, both ways and with both
# profiles:
#   phase 1: SPIRE serves https_spiffe (signet-server fetches it, checking SPIRE's server SVID),
#            signet-server serves https_web with a certificate from a test CA (SPIRE fetches it,
#            trusting only that CA through SSL_CERT_FILE; curl --cacert and go-spiffe's
#            spiffebundle.Parse read the same document);
#   phase 2: both servers restarted with the profiles swapped, the relationships switched with
#            `federation update`.
# A workload under spire-agent (a.test) and one under signet-agent (b.test), entries federating
# with the other trust domain, complete mTLS both ways (go-spiffe spiffetls, each side
# authorizing exactly the other's SPIFFE ID against its own agent's bundles). A forced X.509 CA
# rotation in b.test (localauthority prepare, refresh, activate, taint) reaches a.test's
# workload through the bundle endpoint while handshakes keep running, with none failing.
# `spire-server federation create/list/show/refresh/delete` against signet-server's admin
# socket gives the same results as `signet-server federation`.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
source "$INTEROP_DIR/lib/server.sh"
source "$INTEROP_DIR/lib/agent.sh"

require_bin "$SPIRE_SERVER" "$SPIRE_AGENT" "$SIGNET_SERVER" "$SIGNET_AGENT" "$SPIFFE_CHECK"
command -v curl >/dev/null || fail "curl is needed"

A_TD=a.test
B_TD=b.test
A_PORT_FED="$(free_port)"
B_PORT_FED="$(free_port)"

step "a test CA and a serving certificate for 127.0.0.1 (the https_web profile)"
CA="$WORKDIR/ca"
mkdir -p "$CA"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=interop test CA" \
    -keyout "$CA/ca.key" -out "$CA/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$CA/web.key" -out "$CA/web.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$CA/ext.cnf"
openssl x509 -req -in "$CA/web.csr" -CA "$CA/ca.pem" -CAkey "$CA/ca.key" -CAcreateserial -days 1 \
    -extfile "$CA/ext.cnf" -out "$CA/web.pem" 2>/dev/null
info "ok: $CA/web.pem issued by $CA/ca.pem"

# fed_block <https_spiffe|https_web> <port>: the server { federation {} } block, SPIRE's syntax.
fed_block() {
    local profile="$1" port="$2" inner='profile "https_spiffe" {}'
    if [[ "$profile" == https_web ]]; then
        inner="profile \"https_web\" {
                serving_cert_file {
                    cert_file_path = \"$CA/web.pem\"
                    key_file_path = \"$CA/web.key\"
                    file_sync_interval = \"1m\"
                }
            }"
    fi
    cat <<EOB
    federation {
        bundle_endpoint {
            address = "127.0.0.1"
            port = $port
            refresh_hint = "1m"
            $inner
        }
    }
EOB
}

# start_named <name> <impl> <conf> <sock>: starts a server (trusting the test CA for https_web
# fetches) and waits until its admin socket answers.
start_named() {
    local name="$1" impl="$2" conf="$3" sock="$4"
    rm -f "$sock"
    if [[ "$impl" == spire ]]; then
        start_bg "$name" env SSL_CERT_FILE="$CA/ca.pem" "$SPIRE_SERVER" run -config "$conf"
    else
        start_bg "$name" env SSL_CERT_FILE="$CA/ca.pem" "$SIGNET_SERVER" run --config "$conf"
    fi
    wait_for_socket "$name" "$sock" 60
    local deadline=$((SECONDS + 60))
    until "$SPIRE_SERVER" bundle show -socketPath "$sock" >"$OUT/ready.out" 2>"$OUT/ready.err"; do
        is_running "$name" || fail "$name exited during startup"
        ((SECONDS < deadline)) || fail "$name did not answer within 60s: $(cat "$OUT/ready.err")"
        sleep 0.5
    done
    info "ok: $name answers on $sock"
}

A_DIR="$WORKDIR/spire-a"
B_DIR="$WORKDIR/signet-b"
# configure <phase profile for A> <for B>: writes both servers' configs.
configure() {
    SERVER_IMPL=spire TRUST_DOMAIN=$A_TD write_server_conf "$A_DIR" "$(fed_block "$1" "$A_PORT_FED")"
    A_CONF="$SERVER_CONF" A_SOCK="$SERVER_SOCK"
    # The API port must stay the same across the restart (the agents know it).
    if [[ -n "${A_PORT:-}" ]]; then sed -i "s/bind_port = $SERVER_PORT/bind_port = $A_PORT/" "$A_CONF"; else A_PORT="$SERVER_PORT"; fi
    SERVER_IMPL=signet TRUST_DOMAIN=$B_TD write_server_conf "$B_DIR" "$(fed_block "$2" "$B_PORT_FED")"
    B_CONF="$SERVER_CONF" B_SOCK="$SERVER_SOCK"
    if [[ -n "${B_PORT:-}" ]]; then sed -i "s/bind_port = $SERVER_PORT/bind_port = $B_PORT/" "$B_CONF"; else B_PORT="$SERVER_PORT"; fi
}
a_cli() { local n="$1"; shift; must "$n" "$SPIRE_SERVER" "$@" -socketPath "$A_SOCK"; }
b_spire_cli() { local n="$1"; shift; must "$n" "$SPIRE_SERVER" "$@" -socketPath "$B_SOCK"; }
b_cli() { local n="$1"; shift; must "$n" "$SIGNET_SERVER" "$@" --socket-path "$B_SOCK"; }

# federated_fps <td> <server sock>: fingerprints of the roots the server holds for <td>.
federated_fps() {
    "$SPIRE_SERVER" bundle list -id "spiffe://$1" -format pem -socketPath "$2" >"$OUT/fb.pem" 2>"$OUT/fb.err" || return 1
    pem_fingerprints "$OUT/fb.pem"
}
own_fps() { # own_fps <sock>
    "$SPIRE_SERVER" bundle show -format pem -socketPath "$1" >"$OUT/ob.pem" 2>"$OUT/ob.err" || return 1
    pem_fingerprints "$OUT/ob.pem"
}
# holds_bundle_of <holder sock> <td> <owner sock>: holder's bundle for td == owner's own bundle.
holds_bundle_of() {
    local a b
    a="$(federated_fps "$2" "$1")" || return 1
    b="$(own_fps "$3")" || return 1
    [[ -n "$a" && "$a" == "$b" ]]
}
# refresh <name> <sock> <impl> <td>: RefreshBundle, retried while the relationship is not yet
# loaded by the server's refresher.
refresh() {
    local name="$1" sock="$2" impl="$3" td="$4" deadline=$((SECONDS + 30))
    while :; do
        if [[ "$impl" == spire ]]; then
            run_cli "$name" "$SPIRE_SERVER" federation refresh -id "$td" -socketPath "$sock"
        else
            run_cli "$name" "$SIGNET_SERVER" federation refresh --id "$td" --socket-path "$sock"
        fi
        [[ $CLI_RC -eq 0 ]] && return 0
        ((SECONDS < deadline)) || fail "federation refresh of $td on $sock kept failing"
        sleep 1
    done
}

step "phase 1: spire-server ($A_TD, https_spiffe) and signet-server ($B_TD, https_web)"
configure https_spiffe https_web
start_named spire-a spire "$A_CONF" "$A_SOCK"
start_named signet-b signet "$B_CONF" "$B_SOCK"

step "https_web endpoint: curl trusting only the test CA, and go-spiffe's spiffebundle.Parse"
must curl-web curl -sS --fail --cacert "$CA/ca.pem" "https://127.0.0.1:$B_PORT_FED/"
cp "$OUT/curl-web.out" "$WORKDIR/b-endpoint.json"
must parse-web "$SPIFFE_CHECK" bundle -trust-domain "$B_TD" -file "$WORKDIR/b-endpoint.json" -min-x509 1 -min-jwt 1
must_fail curl-untrusted env SSL_CERT_FILE=/nonexistent curl -sS --fail --capath /nonexistent "https://127.0.0.1:$B_PORT_FED/"
info "ok: a client without the test CA refuses the endpoint"

step "relationships, only through the federation CLIs"
a_cli a-bundle bundle show -format spiffe
cp "$OUT/a-bundle.out" "$WORKDIR/a-bundle.json"
b_cli b-fed-create federation create --trust-domain "$A_TD" \
    --bundle-endpoint-url "https://127.0.0.1:$A_PORT_FED" --bundle-endpoint-profile https_spiffe \
    --endpoint-spiffe-id "spiffe://$A_TD/spire/server" \
    --trust-domain-bundle-path "$WORKDIR/a-bundle.json" --trust-domain-bundle-format spiffe
a_cli a-fed-create federation create -trustDomain "$B_TD" \
    -bundleEndpointURL "https://127.0.0.1:$B_PORT_FED" -bundleEndpointProfile https_web
refresh a-refresh "$A_SOCK" spire "$B_TD"
refresh b-refresh "$B_SOCK" signet "$A_TD"
until_true "spire-server holds $B_TD's bundle (fetched over https_web)" 60 holds_bundle_of "$A_SOCK" "$B_TD" "$B_SOCK"
until_true "signet-server holds $A_TD's bundle (fetched over https_spiffe)" 60 holds_bundle_of "$B_SOCK" "$A_TD" "$A_SOCK"

step "spire-server federation CLI against signet-server agrees with signet-server federation"
b_spire_cli s-list federation list -output json
b_cli o-list federation list --output json
assert_eq "federation list (json)" "$(python3 -m json.tool --sort-keys "$OUT/s-list.out")" "$(python3 -m json.tool --sort-keys "$OUT/o-list.out")"
b_spire_cli s-show federation show -trustDomain "$A_TD" -output json
b_cli o-show federation show --trust-domain "$A_TD" --output json
assert_eq "federation show (json)" "$(python3 -m json.tool --sort-keys "$OUT/s-show.out")" "$(python3 -m json.tool --sort-keys "$OUT/o-show.out")"
b_spire_cli s-show-pretty federation show -trustDomain "$A_TD"
assert_file_contains "pretty show" "Trust domain              : $A_TD" "$OUT/s-show-pretty.out"
assert_file_contains "pretty show" "Bundle endpoint URL       : https://127.0.0.1:$A_PORT_FED" "$OUT/s-show-pretty.out"
refresh s-refresh "$B_SOCK" spire "$A_TD"
b_spire_cli s-create federation create -trustDomain c.test -bundleEndpointURL https://127.0.0.1:1/c \
    -bundleEndpointProfile https_web
b_cli o-list2 federation list --output json
assert_match "c.test created by spire-server is listed by signet-server" '"c.test"' "$(cat "$OUT/o-list2.out")"
run_cli s-dup "$SPIRE_SERVER" federation create -trustDomain c.test -bundleEndpointURL https://127.0.0.1:1/c \
    -bundleEndpointProfile https_web -socketPath "$B_SOCK"
[[ $CLI_RC -ne 0 ]] || fail "a duplicate relationship was accepted"
run_cli s-own "$SPIRE_SERVER" federation create -trustDomain "$B_TD" -bundleEndpointURL https://127.0.0.1:1/b \
    -bundleEndpointProfile https_web -socketPath "$B_SOCK"
[[ $CLI_RC -ne 0 ]] || fail "a relationship for signet-server's own trust domain was accepted"
run_cli a-own "$SPIRE_SERVER" federation create -trustDomain "$A_TD" -bundleEndpointURL https://127.0.0.1:1/a \
    -bundleEndpointProfile https_web -socketPath "$A_SOCK"
[[ $CLI_RC -ne 0 ]] || fail "control: spire-server accepted a relationship for its own trust domain"
info "spire-server's own refusal, for comparison: $(head -c 300 "$OUT/a-own.out" "$OUT/a-own.err" | tr '\n' ' ')"
b_cli o-list-bad federation list --output json
assert_eq "refused creates changed nothing" "$(python3 -m json.tool --sort-keys "$OUT/o-list2.out")" "$(python3 -m json.tool --sort-keys "$OUT/o-list-bad.out")"
b_spire_cli s-delete federation delete -id c.test
b_cli o-list3 federation list --output json
assert_eq "after delete, same as before create" "$(python3 -m json.tool --sort-keys "$OUT/o-list.out")" "$(python3 -m json.tool --sort-keys "$OUT/o-list3.out")"

step "a workload under spire-agent ($A_TD) and one under signet-agent ($B_TD)"
a_cli tok-a token generate
TA="$(py token "$OUT/tok-a.out")"
b_cli tok-b token generate
TB="$(py token "$OUT/tok-b.out")"
A_ID="spiffe://$A_TD/workload/spire"
B_ID="spiffe://$B_TD/workload/signet"
a_cli ea entry create -parentID "spiffe://$A_TD/spire/agent/join_token/$TA" -spiffeID "$A_ID" \
    -selector "unix:uid:$(id -u)" -federatesWith "spiffe://$B_TD" -x509SVIDTTL 120
b_cli eb entry create --parent-id "spiffe://$B_TD/spire/agent/join_token/$TB" --spiffe-id "$B_ID" \
    --selector "unix:uid:$(id -u)" --federates-with "spiffe://$A_TD" --x509-svid-ttl 120
"$SPIRE_SERVER" bundle show -socketPath "$A_SOCK" >"$WORKDIR/a-boot.pem"
"$SPIRE_SERVER" bundle show -socketPath "$B_SOCK" >"$WORKDIR/b-boot.pem"
SERVER_PORT=$A_PORT TRUST_DOMAIN=$A_TD write_agent_conf "$WORKDIR/spire-agent" "$WORKDIR/a-boot.pem"
A_AGENT_CONF="$AGENT_CONF" A_AGENT_SOCK="$AGENT_SOCK"
SERVER_PORT=$B_PORT TRUST_DOMAIN=$B_TD write_agent_conf "$WORKDIR/signet-agent" "$WORKDIR/b-boot.pem"
B_AGENT_CONF="$AGENT_CONF" B_AGENT_SOCK="$AGENT_SOCK"
start_bg spire-agent "$SPIRE_AGENT" run -config "$A_AGENT_CONF" -joinToken "$TA"
start_bg signet-agent "$SIGNET_AGENT" run --config "$B_AGENT_CONF" --join-token "$TB"
AGENT_SOCK="$A_AGENT_SOCK" wait_for_svid spire-agent "$A_ID" 90
AGENT_SOCK="$B_AGENT_SOCK" wait_for_svid signet-agent "$B_ID" 90

# xmtls <name> [flags]: signet-agent's workload serves, spire-agent's dials, and the reverse.
xmtls_both() {
    local name="$1"; shift
    must "$name-b-serves" "$SPIFFE_CHECK" xmtls -addr "unix://$B_AGENT_SOCK" -peer-addr "unix://$A_AGENT_SOCK" \
        -server-id "$B_ID" -client-id "$A_ID" "$@"
    must "$name-a-serves" "$SPIFFE_CHECK" xmtls -addr "unix://$A_AGENT_SOCK" -peer-addr "unix://$B_AGENT_SOCK" \
        -server-id "$A_ID" -client-id "$B_ID" "$@"
}
# fed_bundle_fps <agent sock> <td>: fingerprints of the federated bundle for td the agent serves.
fed_bundle_fps() {
    local dir="$OUT/fetch-$RANDOM"
    mkdir -p "$dir"
    "$SPIRE_AGENT" api fetch x509 -socketPath "$1" -write "$dir" >"$dir/out.txt" 2>&1 || return 1
    cat "$dir"/federated_bundle.0.*.pem >"$dir/fed.pem" 2>/dev/null || return 1
    pem_fingerprints "$dir/fed.pem"
}
agent_has_fed_bundle() { # agent_has_fed_bundle <agent sock> <td> <owner server sock>
    local a b
    a="$(fed_bundle_fps "$1" "$2")" || return 1
    b="$(own_fps "$3")" || return 1
    [[ -n "$a" && "$a" == "$b" ]]
}
until_true "spire-agent's workload has $B_TD's bundle" 60 agent_has_fed_bundle "$A_AGENT_SOCK" "$B_TD" "$B_SOCK"
until_true "signet-agent's workload has $A_TD's bundle" 60 agent_has_fed_bundle "$B_AGENT_SOCK" "$A_TD" "$A_SOCK"

step "mTLS across the trust domains, both directions"
xmtls_both p1

step "forced CA rotation in $B_TD reaches $A_TD's workload; handshakes keep working throughout"
start_bg xmtls-during "$SPIFFE_CHECK" xmtls -addr "unix://$B_AGENT_SOCK" -peer-addr "unix://$A_AGENT_SOCK" \
    -server-id "$B_ID" -client-id "$A_ID" -for 45s -every 250ms
b_spire_cli la-prep localauthority x509 prepare -output json
NEW="$(py json-get "$OUT/la-prep.out" prepared_authority.authority_id)"
b_spire_cli la-show localauthority x509 show -output json
OLD="$(py json-get "$OUT/la-show.out" active.authority_id)"
refresh a-refresh2 "$A_SOCK" spire "$B_TD"
until_true "the prepared $B_TD root reaches spire-agent's workload" 60 agent_has_fed_bundle "$A_AGENT_SOCK" "$B_TD" "$B_SOCK"
b_spire_cli la-act localauthority x509 activate -authorityID "$NEW"
b_spire_cli la-taint localauthority x509 taint -authorityID "$OLD"
issued_by_new() {
    local dir="$OUT/fetch-new"
    rm -rf "$dir"; mkdir -p "$dir"
    "$SPIRE_AGENT" api fetch x509 -socketPath "$B_AGENT_SOCK" -write "$dir" >/dev/null 2>&1 || return 1
    [[ "$(aki_of "$dir/svid.0.pem")" == "$NEW" ]]
}
until_true "signet-agent's workload SVID is issued by the new $B_TD authority" 60 issued_by_new
info "waiting for the handshake loop that ran through the rotation"
for _ in $(seq 120); do is_running xmtls-during || break; sleep 0.5; done
is_running xmtls-during && fail "the handshake loop did not finish"
wait "$PID_xmtls_during" || { cat "$LOGDIR/xmtls-during.log"; fail "a handshake failed during the rotation"; }
grep 'handshake(s) ok' "$LOGDIR/xmtls-during.log"
grep -q ', 0 failed' "$LOGDIR/xmtls-during.log" || fail "failed handshakes during the rotation"
xmtls_both p1-after-rotation

step "phase 2: both servers restarted with the profiles swapped (SPIRE https_web, signet https_spiffe)"
stop_bg spire-a
stop_bg signet-b
configure https_web https_spiffe
start_named spire-a spire "$A_CONF" "$A_SOCK"
start_named signet-b signet "$B_CONF" "$B_SOCK"
must curl-web-a curl -sS --fail --cacert "$CA/ca.pem" "https://127.0.0.1:$A_PORT_FED/"
cp "$OUT/curl-web-a.out" "$WORKDIR/a-endpoint.json"
must parse-web-a "$SPIFFE_CHECK" bundle -trust-domain "$A_TD" -file "$WORKDIR/a-endpoint.json" -min-x509 1
b_cli b-update federation update --trust-domain "$A_TD" \
    --bundle-endpoint-url "https://127.0.0.1:$A_PORT_FED" --bundle-endpoint-profile https_web
a_cli a-update federation update -trustDomain "$B_TD" \
    -bundleEndpointURL "https://127.0.0.1:$B_PORT_FED" -bundleEndpointProfile https_spiffe \
    -endpointSpiffeID "spiffe://$B_TD/spire/server"
b_spire_cli s-show2 federation show -trustDomain "$A_TD" -output json
assert_match "relationship switched to https_web" '"https_web"' "$(cat "$OUT/s-show2.out")"
# New roots on both sides, so that what each holds after the refresh can only have come over
# the new profile.
a_cli a-prep2 localauthority x509 prepare
b_spire_cli b-prep2 localauthority x509 prepare
refresh a-refresh3 "$A_SOCK" spire "$B_TD"
refresh b-refresh3 "$B_SOCK" signet "$A_TD"
until_true "spire-server holds $B_TD's bundle (fetched over https_spiffe)" 60 holds_bundle_of "$A_SOCK" "$B_TD" "$B_SOCK"
until_true "signet-server holds $A_TD's bundle (fetched over https_web)" 60 holds_bundle_of "$B_SOCK" "$A_TD" "$A_SOCK"
AGENT_SOCK="$A_AGENT_SOCK" wait_for_svid spire-agent "$A_ID" 90
AGENT_SOCK="$B_AGENT_SOCK" wait_for_svid signet-agent "$B_ID" 90
xmtls_both p2

step "bad input: an https_spiffe relationship whose endpoint presents another ID keeps the stored bundle"
b_spire_cli before-bad bundle list -id "spiffe://$A_TD" -format pem
b_cli b-bad federation update --trust-domain "$A_TD" \
    --bundle-endpoint-url "https://127.0.0.1:$A_PORT_FED" --bundle-endpoint-profile https_spiffe \
    --endpoint-spiffe-id "spiffe://$A_TD/not/the/server"
run_cli b-bad-refresh "$SIGNET_SERVER" federation refresh --id "$A_TD" --socket-path "$B_SOCK"
[[ $CLI_RC -ne 0 ]] || fail "refresh against an endpoint that does not present the expected ID succeeded"
b_spire_cli after-bad bundle list -id "spiffe://$A_TD" -format pem
assert_eq "stored $A_TD bundle unchanged" "$(pem_fingerprints "$OUT/before-bad.out")" "$(pem_fingerprints "$OUT/after-bad.out")"

info "federation with SPIRE: both ways, both profiles, mTLS across trust domains through a CA rotation"

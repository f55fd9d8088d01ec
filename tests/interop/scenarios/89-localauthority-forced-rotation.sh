#!/usr/bin/env bash
# Forced rotation with the real `spire-server localauthority` CLI against the server under test,
# watched through a signet-agent (go-spiffe watcher) and a real spire-agent side by side.
# X.509: show / prepare / activate (a wrong ID refused with InvalidArgument, state unchanged) /
# taint of the active authority refused (InvalidArgument, unchanged) / taint of the old one:
# both agents replace every SVID chained to the tainted CA within seconds (go-spiffe's
# WatchX509Context sees the new SVID with every update verified and no gap) / revoke: the old
# root leaves both agents' bundles. JWT: prepare / activate / taint (both agents hand out a
# JWT-SVID with the new kid within seconds) / revoke (the old kid leaves the JWT bundle).
# Each state is cross-checked with `signet-server localauthority ... --output json`.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
source "$INTEROP_DIR/lib/server.sh"
source "$INTEROP_DIR/lib/agent.sh"

require_bin "$SPIRE_SERVER" "$SPIRE_AGENT" "$SIGNET_AGENT" "$SPIFFE_CHECK"
TD="spiffe://$TRUST_DOMAIN"
REACT="${TAINT_REACTION_SECONDS:-30}"

# ski_of <pem file>: hex SKI of each certificate, one per line.
ski_of() {
    python3 - "$1" <<'EOF'
import base64, re, subprocess, sys
text = open(sys.argv[1]).read()
for pem in re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S):
    out = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectKeyIdentifier"],
                         input=pem, capture_output=True, text=True, check=True).stdout
    print(out.splitlines()[-1].strip().replace(":", "").lower())
EOF
}
# fetch_into <dir> <socket>: spire-agent api fetch x509 -write <dir>.
fetch_into() {
    rm -rf "$1"; mkdir -p "$1"
    "$SPIRE_AGENT" api fetch x509 -socketPath "$2" -write "$1" >"$1/out.txt" 2>&1
}
# jwt_kid <socket>: the kid of a fresh JWT-SVID for audience "interop" from the agent at socket.
jwt_kid() {
    "$SPIRE_AGENT" api fetch jwt -audience interop -socketPath "$1" -output json >"$OUT/jwt.json" 2>"$OUT/jwt.err" || return 1
    python3 - "$OUT/jwt.json" <<'EOF'
import base64, json, sys
text = open(sys.argv[1]).read()
dec, docs, i = json.JSONDecoder(), [], 0
while i < len(text):
    if text[i].isspace(): i += 1; continue
    d, i = dec.raw_decode(text, i); docs.extend(d if isinstance(d, list) else [d])
tok = next(d for d in docs if "svids" in d)["svids"][0]["svid"]
head = tok.split(".")[0]
print(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])
EOF
}
# jwt_bundle_kids <socket>: the key IDs of the own trust domain's JWT bundle.
jwt_bundle_kids() {
    "$SPIRE_AGENT" api fetch jwt -audience interop -socketPath "$1" -output json >"$OUT/jwtb.json" 2>/dev/null || return 1
    python3 - "$OUT/jwtb.json" "$TRUST_DOMAIN" <<'EOF'
import base64, json, sys
text = open(sys.argv[1]).read()
dec, docs, i = json.JSONDecoder(), [], 0
while i < len(text):
    if text[i].isspace(): i += 1; continue
    d, i = dec.raw_decode(text, i); docs.extend(d if isinstance(d, list) else [d])
bundles = next(d for d in docs if "bundles" in d)["bundles"]
key = next(k for k in bundles if k.rstrip("/").endswith(sys.argv[2]))
jwks = json.loads(base64.b64decode(bundles[key]))
print(" ".join(sorted(k["kid"] for k in jwks["keys"])))
EOF
}
la_json() { # la_json <name> <x509|jwt> <verb> [flags]: spire-server localauthority ... -output json
    local name="$1" kind="$2" verb="$3"; shift 3
    spire_cli "$name" localauthority "$kind" "$verb" "$@" -output json
}
same_state() { # same_state <kind> <file>: signet-server's and spire-server's show agree with <file>
    local kind="$1" file="$2"
    la_json "state-now" "$kind" show
    assert_eq "$kind state (spire-server CLI)" "$(cat "$file")" "$(cat "$OUT/state-now.out")"
    if [[ "$SERVER_IMPL" == signet ]]; then
        own_cli "own-state" localauthority "$kind" show --output json
        assert_eq "$kind state (signet-server CLI)" "$(cat "$file")" "$(cat "$OUT/own-state.out")"
    fi
}

step "start the server under test ($SERVER_IMPL)"
write_server_conf "$WORKDIR/server"
start_server
spire_cli bootstrap bundle show
cp "$OUT/bootstrap.out" "$WORKDIR/bootstrap.pem"

step "a signet-agent and a spire-agent, one workload entry under each"
spire_cli token1 token generate
T1="$(py token "$OUT/token1.out")"
spire_cli token2 token generate
T2="$(py token "$OUT/token2.out")"
SIG_ID="$TD/la/signet"
SPI_ID="$TD/la/spire"
spire_cli e1 entry create -parentID "$TD/spire/agent/join_token/$T1" -spiffeID "$SIG_ID" -selector "unix:uid:$(id -u)"
spire_cli e2 entry create -parentID "$TD/spire/agent/join_token/$T2" -spiffeID "$SPI_ID" -selector "unix:uid:$(id -u)"
write_agent_conf "$WORKDIR/spire-agent" "$WORKDIR/bootstrap.pem"
SPI_SOCK="$AGENT_SOCK"
SPI_CONF="$AGENT_CONF"
write_agent_conf "$WORKDIR/signet-agent" "$WORKDIR/bootstrap.pem"
SIG_SOCK="$AGENT_SOCK"
start_bg signet-agent "$SIGNET_AGENT" run --config "$AGENT_CONF" --join-token "$T1"
start_bg spire-agent "$SPIRE_AGENT" run -config "$SPI_CONF" -joinToken "$T2"
AGENT_SOCK="$SIG_SOCK" wait_for_svid signet-agent "$SIG_ID" 60
AGENT_SOCK="$SPI_SOCK" wait_for_svid spire-agent "$SPI_ID" 60

step "x509 show: one active authority, which signs both workloads' SVIDs"
la_json show0 x509 show
OLD="$(py json-get "$OUT/show0.out" active.authority_id)"
cp "$OUT/show0.out" "$WORKDIR/state0.json"
same_state x509 "$WORKDIR/state0.json"
spire_cli show0-pretty localauthority x509 show
assert_file_contains "pretty show" "  Authority ID: $OLD" "$OUT/show0-pretty.out"
assert_file_contains "pretty show" "  No prepared X.509 authority found" "$OUT/show0-pretty.out"
for s in "$SIG_SOCK" "$SPI_SOCK"; do
    fetch_into "$WORKDIR/f0" "$s" || fail "fetch from $s"
    assert_eq "issuer of the SVID from $s" "$OLD" "$(aki_of "$WORKDIR/f0/svid.0.pem")"
done

step "x509 prepare: the new root reaches both agents' bundles"
la_json prep x509 prepare
NEW="$(py json-get "$OUT/prep.out" prepared_authority.authority_id)"
assert_ne "prepared authority" "$OLD" "$NEW"
for s in "$SIG_SOCK" "$SPI_SOCK"; do
    until_true "new root in the bundle of $s" "$REACT" \
        bash -c "$(declare -f fetch_into ski_of); SPIRE_AGENT='$SPIRE_AGENT'; fetch_into '$WORKDIR/fp' '$s' && ski_of '$WORKDIR/fp/bundle.0.pem' | grep -qx '$NEW'"
done

step "bad input: activate with a wrong authority ID is refused and changes nothing"
la_json state1 x509 show
cp "$OUT/state1.out" "$WORKDIR/state1.json"
spire_cli_try bad-activate localauthority x509 activate -authorityID 00ff00ff
[[ $CLI_RC -ne 0 ]] || fail "activate with a wrong ID succeeded"
assert_file_contains "wrong ID" "code = InvalidArgument desc = unexpected authority ID" "$OUT/bad-activate.err"
same_state x509 "$WORKDIR/state1.json"

step "x509 activate (spire-server), then a taint of the active authority is refused"
la_json act x509 activate -authorityID "$NEW"
assert_eq "activated" "$NEW" "$(py json-get "$OUT/act.out" activated_authority.authority_id)"
la_json state2 x509 show
assert_eq "old after activation" "$OLD" "$(py json-get "$OUT/state2.out" old.authority_id)"
cp "$OUT/state2.out" "$WORKDIR/state2.json"
spire_cli_try bad-taint localauthority x509 taint -authorityID "$NEW"
[[ $CLI_RC -ne 0 ]] || fail "taint of the active authority succeeded"
assert_file_contains "taint active" "code = InvalidArgument desc = unable to taint current local authority" "$OUT/bad-taint.err"
same_state x509 "$WORKDIR/state2.json"

step "watch both agents with go-spiffe, then taint the old authority"
start_bg watch-signet "$SPIFFE_CHECK" watch -addr "unix://$SIG_SOCK" -rotations 1 -timeout "$((REACT + 30))s" -expect "$SIG_ID"
start_bg watch-spire "$SPIFFE_CHECK" watch -addr "unix://$SPI_SOCK" -rotations 1 -timeout "$((REACT + 30))s" -expect "$SPI_ID"
sleep 2
spire_cli taint localauthority x509 taint -authorityID "$OLD"
assert_file_contains "taint output" "Tainted X.509 authority:" "$OUT/taint.out"
assert_file_contains "taint output" "  Authority ID: $OLD" "$OUT/taint.out"
for s in "$SIG_SOCK" "$SPI_SOCK"; do
    until_true "SVID from $s re-minted under $NEW" "$REACT" \
        bash -c "$(declare -f fetch_into aki_of); SPIRE_AGENT='$SPIRE_AGENT'; fetch_into '$WORKDIR/ft' '$s' && [[ \$(aki_of '$WORKDIR/ft/svid.0.pem') == '$NEW' ]]"
done
for w in watch-signet watch-spire; do
    pid_var="PID_${w//-/_}"
    wait "${!pid_var}" || { cat "$LOGDIR/$w.log"; fail "$w: the go-spiffe watch failed"; }
    cat "$LOGDIR/$w.log"
    grep -q "watch: 1 rotation(s)" "$LOGDIR/$w.log" || fail "$w saw no rotation"
    if grep -q "0 watch error(s)" "$LOGDIR/$w.log"; then
        continue
    fi
    # spire-agent drops a tainted SVID from its cache before it re-mints it ("Tainted X.509
    # SVIDs" in its log), so a watcher may see "no identity issued" for a moment: SPIRE's own
    # agent, whatever the server. signet-agent keeps serving the old SVID until the new one
    # arrives: it must show no error at all.
    [[ "$w" == watch-spire ]] || fail "$w saw watch errors"
    grep -q 'msg="Tainted X.509 SVIDs"' "$LOGDIR/spire-agent.log" || fail "$w saw watch errors"
    if grep "watch error" "$LOGDIR/$w.log" | grep -v "watch error(s)" | grep -vq "PermissionDenied desc = no identity issued"; then
        fail "$w saw watch errors other than spire-agent's own taint gap"
    fi
    info "$w: spire-agent's own gap while it re-minted the tainted SVID (its cache drops it first)"
done

step "x509 revoke (signet-server's CLI when testing signet): the old root leaves both bundles"
if [[ "$SERVER_IMPL" == signet ]]; then
    own_cli revoke localauthority x509 revoke --authority-id "$OLD"
    assert_file_contains "revoke output" "Revoked X.509 authority:" "$OUT/revoke.out"
else
    spire_cli revoke localauthority x509 revoke -authorityID "$OLD"
fi
for s in "$SIG_SOCK" "$SPI_SOCK"; do
    until_true "old root gone from the bundle of $s" "$REACT" \
        bash -c "$(declare -f fetch_into ski_of); SPIRE_AGENT='$SPIRE_AGENT'; fetch_into '$WORKDIR/fr' '$s' && [[ \$(ski_of '$WORKDIR/fr/bundle.0.pem') == '$NEW' ]]"
    openssl verify -CAfile "$WORKDIR/fr/bundle.0.pem" "$WORKDIR/fr/svid.0.pem" >/dev/null ||
        fail "SVID from $s does not verify against the revoked-down bundle"
done
spire_cli bundle-after bundle show
assert_eq "server bundle after revoke" "$NEW" "$(ski_of "$OUT/bundle-after.out")"

step "JWT: prepare, activate, taint (new kid served within seconds), revoke (old kid gone)"
la_json jshow jwt show
JOLD="$(py json-get "$OUT/jshow.out" active.authority_id)"
for s in "$SIG_SOCK" "$SPI_SOCK"; do
    assert_eq "kid from $s" "$JOLD" "$(jwt_kid "$s")"
done
la_json jprep jwt prepare
JNEW="$(py json-get "$OUT/jprep.out" prepared_authority.authority_id)"
spire_cli_try jbad localauthority jwt taint -authorityID "$JNEW"
[[ $CLI_RC -ne 0 ]] || fail "taint of the prepared JWT authority succeeded"
assert_file_contains "taint prepared" "code = InvalidArgument desc = only Old local authorities can be tainted" "$OUT/jbad.err"
la_json jact jwt activate -authorityID "$JNEW"
la_json jstate jwt show
cp "$OUT/jstate.out" "$WORKDIR/jstate.json"
same_state jwt "$WORKDIR/jstate.json"
spire_cli jtaint localauthority jwt taint -authorityID "$JOLD"
for s in "$SIG_SOCK" "$SPI_SOCK"; do
    until_true "JWT-SVID from $s signed by the new kid" "$REACT" \
        bash -c "$(declare -f jwt_kid); SPIRE_AGENT='$SPIRE_AGENT'; OUT='$OUT'; [[ \$(jwt_kid '$s') == '$JNEW' ]]"
done
spire_cli jrevoke localauthority jwt revoke -authorityID "$JOLD"
for s in "$SIG_SOCK" "$SPI_SOCK"; do
    until_true "old kid gone from the JWT bundle of $s" "$REACT" \
        bash -c "$(declare -f jwt_bundle_kids); SPIRE_AGENT='$SPIRE_AGENT'; OUT='$OUT'; TRUST_DOMAIN='$TRUST_DOMAIN'; [[ \$(jwt_bundle_kids '$s') == '$JNEW' ]]"
done

is_running server || fail "server exited"
is_running signet-agent || fail "signet-agent exited"
is_running spire-agent || fail "spire-agent exited"
echo PASS

#!/usr/bin/env bash
# The rest of the `spire-server` admin CLI against the server under test: healthcheck, federated
# bundles (set / list / count / delete modes), entries from a -data file with every field, entry
# update (revision 0 -> 1), count, selector match modes, downstream filter, and delete.
# Results are cross-checked with the server's own CLI.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
source "$INTEROP_DIR/lib/server.sh"

require_bin "$SPIRE_SERVER"
TD="spiffe://$TRUST_DOMAIN"
OTHER="spiffe://other.org"

step "start the server under test ($SERVER_IMPL)"
write_server_conf "$WORKDIR/server"
start_server

step "healthcheck"
spire_cli health healthcheck
assert_file_contains "spire-server healthcheck" "Server is healthy." "$OUT/health.out"
own_cli own-health healthcheck
assert_file_contains "own healthcheck" "Server is healthy." "$OUT/own-health.out"

step "bundle set: a federated bundle for other.org (PEM), listed by both CLIs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/O=other" \
    -keyout "$WORKDIR/other.key" -out "$WORKDIR/other.pem" \
    -addext "subjectAltName=URI:$OTHER" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
pem_fingerprints "$WORKDIR/other.pem" >"$OUT/fp-other.txt"
spire_cli bundle-set bundle set -id "$OTHER" -path "$WORKDIR/other.pem"
assert_file_contains "bundle set" "bundle set." "$OUT/bundle-set.out"
spire_cli bundle-list bundle list
assert_file_contains "bundle list header" "* other.org" "$OUT/bundle-list.out"
pem_fingerprints "$OUT/bundle-list.out" >"$OUT/fp-list.txt"
assert_same_lines "bundle list (federated only)" "$OUT/fp-other.txt" "$OUT/fp-list.txt"
spire_cli bundle-list-id bundle list -id "$OTHER"
pem_fingerprints "$OUT/bundle-list-id.out" >"$OUT/fp-list-id.txt"
assert_same_lines "bundle list -id $OTHER" "$OUT/fp-other.txt" "$OUT/fp-list-id.txt"
spire_cli bundle-list-json bundle list -output json
py bundle-json "$OUT/bundle-list-json.out" >"$OUT/bundle-list-json.pem"
pem_fingerprints "$OUT/bundle-list-json.pem" >"$OUT/fp-list-json.txt"
assert_same_lines "bundle list -output json" "$OUT/fp-other.txt" "$OUT/fp-list-json.txt"
assert_eq "federated bundle trust_domain" "other.org" "$(py json-get "$OUT/bundle-list-json.out" bundles.0.trust_domain)"
own_cli own-bundle-list bundle list --id "$OTHER"
pem_fingerprints "$OUT/own-bundle-list.out" >"$OUT/fp-own-list.txt"
assert_same_lines "own bundle list --id $OTHER" "$OUT/fp-other.txt" "$OUT/fp-own-list.txt"
spire_cli bundle-count bundle count
assert_match "bundle count (own + other.org)" '^2 bundles$' "$(cat "$OUT/bundle-count.out")"

step "bundle set -format spiffe replaces it"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/O=other2" \
    -keyout "$WORKDIR/other2.key" -out "$WORKDIR/other2.pem" \
    -addext "subjectAltName=URI:$OTHER" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
python3 - "$WORKDIR/other2.pem" >"$WORKDIR/other2.json" <<'PY'
import base64, json, re, sys
pem = open(sys.argv[1]).read()
der = base64.b64decode("".join(re.search(r"-----BEGIN CERTIFICATE-----(.*?)-----END", pem, re.S).group(1).split()))
print(json.dumps({"keys": [{"use": "x509-svid", "kty": "EC", "crv": "P-256", "x5c": [base64.b64encode(der).decode()],
    "x": "", "y": ""}], "spiffe_sequence": 7}))
PY
# x/y must match the certificate's key; let openssl give them to us.
python3 - "$WORKDIR/other2.pem" "$WORKDIR/other2.json" <<'PY'
import base64, json, subprocess, sys
pub = subprocess.run(["openssl", "x509", "-in", sys.argv[1], "-noout", "-pubkey"], capture_output=True, check=True).stdout
der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub, capture_output=True, check=True).stdout
point = der[-65:]
assert point[0] == 4
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
doc = json.load(open(sys.argv[2]))
doc["keys"][0]["x"], doc["keys"][0]["y"] = b64(point[1:33]), b64(point[33:])
json.dump(doc, open(sys.argv[2], "w"))
PY
spire_cli bundle-set-spiffe bundle set -id "$OTHER" -path "$WORKDIR/other2.json" -format spiffe
pem_fingerprints "$WORKDIR/other2.pem" >"$OUT/fp-other2.txt"
spire_cli bundle-list-2 bundle list -id "$OTHER"
pem_fingerprints "$OUT/bundle-list-2.out" >"$OUT/fp-list-2.txt"
assert_same_lines "bundle after set -format spiffe" "$OUT/fp-other2.txt" "$OUT/fp-list-2.txt"
spire_cli bundle-list-2-spiffe bundle list -id "$OTHER" -format spiffe
assert_eq "spiffe_sequence kept" 7 "$(py json-get "$OUT/bundle-list-2-spiffe.out" spiffe_sequence)"

step "entry create -data: every field, plus a node (alias) entry"
EXPIRY=$(( $(date +%s) + 86400 ))
cat >"$WORKDIR/entries.json" <<EOF
{
  "entries": [
    {
      "spiffe_id": "$TD/full",
      "parent_id": "$TD/spire/agent/x",
      "selectors": [{"type": "unix", "value": "uid:1000"}, {"type": "unix", "value": "gid:50"}],
      "x509_svid_ttl": 600,
      "jwt_svid_ttl": 90,
      "federates_with": ["$OTHER"],
      "admin": true,
      "downstream": true,
      "entryExpiry": $EXPIRY,
      "dns_names": ["b.example.org", "a.example.org"],
      "hint": "the-hint"
    },
    {
      "spiffe_id": "$TD/cluster",
      "parent_id": "$TD/spire/server",
      "selectors": [{"type": "x509pop", "value": "san:cluster:test"}]
    }
  ]
}
EOF
spire_cli create-data entry create -data "$WORKDIR/entries.json" -output json
py entries-full "$OUT/create-data.out" >"$OUT/created.tsv"
assert_eq "entries created from -data" 2 "$(wc -l <"$OUT/created.tsv")"
FULL_ID="$(awk -F'\t' -v s="$TD/full" '$2 == s { print $1 }' "$OUT/created.tsv")"
NODE_ID="$(awk -F'\t' -v s="$TD/cluster" '$2 == s { print $1 }' "$OUT/created.tsv")"
[[ -n "$FULL_ID" && -n "$NODE_ID" ]] || fail "created entries not found in output"
assert_eq "full entry" "$(printf '%s\t' "$FULL_ID" "$TD/full" "$TD/spire/agent/x" "unix:gid:50,unix:uid:1000" 600 90 0 true true false "$EXPIRY" the-hint "a.example.org,b.example.org")other.org" \
    "$(grep -F "$FULL_ID" "$OUT/created.tsv")"
assert_eq "node entry" "$(printf '%s\t' "$NODE_ID" "$TD/cluster" "$TD/spire/server" "x509pop:san:cluster:test" default default 0 false false false 0 "" "")" \
    "$(grep -F "$NODE_ID" "$OUT/created.tsv")"

step "entry create -node and the pretty view of every field"
spire_cli create-node entry create -node -spiffeID "$TD/cluster2" -selector x509pop:san:cluster:two
py entries "$OUT/create-node.out" >"$OUT/create-node.tsv"
assert_eq "-node parent" "$TD/spire/server" "$(cut -f3 "$OUT/create-node.tsv")"
NODE2_ID="$(cut -f1 "$OUT/create-node.tsv")"
spire_cli show-full entry show -entryID "$FULL_ID"
for line in "Downstream       : true" "Admin            : true" "Hint             : the-hint" \
    "DNS name         : b.example.org" "DNS name         : a.example.org" "FederatesWith    : other.org" \
    "X509-SVID TTL    : 600" "JWT-SVID TTL     : 90" "Expiration time  : "; do
    assert_file_contains "entry show (pretty)" "$line" "$OUT/show-full.out"
done
spire_cli show-all-json entry show -output json
py entries-full "$OUT/show-all-json.out" >"$OUT/show-all.tsv"
own_cli own-show-all-json entry show --output json
py entries-full "$OUT/own-show-all-json.out" >"$OUT/own-show-all.tsv"
assert_same_lines "own entry show --output json vs spire-server (every field)" "$OUT/show-all.tsv" "$OUT/own-show-all.tsv"

step "bundle delete is restricted while an entry federates with the bundle"
spire_cli_try bundle-delete-restricted bundle delete -id "$OTHER"
[[ $CLI_RC -ne 0 ]] || fail "bundle delete (restrict) succeeded although $FULL_ID federates with $OTHER"
spire_cli bundle-list-3 bundle list -id "$OTHER"

step "filters: -downstream, selector match modes, -federatesWith, -hint"
spire_cli show-downstream entry show -downstream
py entries "$OUT/show-downstream.out" | cut -f1 >"$OUT/ids.txt"
assert_eq "entry show -downstream" "$FULL_ID" "$(cat "$OUT/ids.txt")"
spire_cli show-plain entry show
assert_eq "entry show (no filter) count" 3 "$(py count "$OUT/show-plain.out")"
for mode_want in "exact:" "superset:$FULL_ID" "subset:" "any:$FULL_ID"; do
    mode="${mode_want%%:*}" want="${mode_want#*:}"
    spire_cli "sel-$mode" entry show -selector unix:uid:1000 -matchSelectorsOn "$mode"
    py entries "$OUT/sel-$mode.out" | cut -f1 | sort | paste -sd, >"$OUT/ids.txt"
    assert_eq "entry show -selector unix:uid:1000 -matchSelectorsOn $mode" "$want" "$(cat "$OUT/ids.txt")"
done
spire_cli sel-exact-2 entry show -selector unix:uid:1000 -selector unix:gid:50 -matchSelectorsOn exact
assert_eq "exact match on both selectors" "$FULL_ID" "$(py entries "$OUT/sel-exact-2.out" | cut -f1)"
spire_cli sel-subset-2 entry show -selector unix:uid:1000 -selector unix:gid:50 -selector x509pop:san:cluster:test -matchSelectorsOn subset
assert_eq "subset match" "$(printf '%s\n' "$FULL_ID" "$NODE_ID" | sort | paste -sd,)" \
    "$(py entries "$OUT/sel-subset-2.out" | cut -f1 | sort | paste -sd,)"
spire_cli show-fed entry show -federatesWith "$OTHER"
assert_eq "entry show -federatesWith" "$FULL_ID" "$(py entries "$OUT/show-fed.out" | cut -f1)"
spire_cli show-hint entry show -hint the-hint
assert_eq "entry show -hint" "$FULL_ID" "$(py entries "$OUT/show-hint.out" | cut -f1)"

step "entry count agrees with both CLIs"
spire_cli count entry count
assert_match "spire-server entry count" '^3 registration entries$' "$(cat "$OUT/count.out")"
spire_cli count-parent entry count -parentID "$TD/spire/server"
assert_match "entry count -parentID" '^2 registration entries$' "$(cat "$OUT/count-parent.out")"
own_cli own-count entry count
assert_match "own entry count" '(^|[^0-9])3([^0-9]|$)' "$(cat "$OUT/own-count.out")"

step "entry update: revision goes 0 -> 1 and the new fields stick"
spire_cli update entry update -entryID "$NODE2_ID" -parentID "$TD/spire/agent/z" -spiffeID "$TD/updated" \
    -selector unix:uid:2000 -x509SVIDTTL 300 -dns new.example.org
spire_cli show-updated entry show -entryID "$NODE2_ID" -output json
py entries-full "$OUT/show-updated.out" >"$OUT/updated.tsv"
assert_eq "updated entry" "$(printf '%s\t' "$NODE2_ID" "$TD/updated" "$TD/spire/agent/z" unix:uid:2000 300 default 1 false false false 0 "" "new.example.org")" \
    "$(cat "$OUT/updated.tsv")"
own_cli own-show-updated entry show --entry-id "$NODE2_ID" --output json
py entries-full "$OUT/own-show-updated.out" >"$OUT/own-updated.tsv"
assert_same_lines "own view of the updated entry" "$OUT/updated.tsv" "$OUT/own-updated.tsv"
spire_cli_try update-missing entry update -entryID no-such-entry -parentID "$TD/spire/agent/z" -spiffeID "$TD/x" -selector a:b
[[ $CLI_RC -ne 0 ]] || fail "updating a missing entry succeeded"
assert_file_contains "update of a missing entry" "NotFound" "$OUT/update-missing.err"

step "entry delete"
spire_cli delete entry delete -entryID "$NODE2_ID"
assert_file_contains "entry delete" "Deleted entry with ID: $NODE2_ID" "$OUT/delete.out"
spire_cli_try show-deleted entry show -entryID "$NODE2_ID"
[[ $CLI_RC -ne 0 ]] || fail "deleted entry is still shown"
spire_cli_try delete-again entry delete -entryID "$NODE2_ID"
[[ $CLI_RC -ne 0 ]] || fail "deleting a deleted entry succeeded"
assert_file_contains "second delete" "NotFound" "$OUT/delete-again.err"
own_cli own-count-2 entry count
assert_match "own entry count after delete" '(^|[^0-9])2([^0-9]|$)' "$(cat "$OUT/own-count-2.out")"

step "bundle delete -mode dissociate, then the entry no longer federates"
spire_cli bundle-delete bundle delete -id "$OTHER" -mode dissociate
assert_file_contains "bundle delete" "bundle deleted." "$OUT/bundle-delete.out"
spire_cli bundle-list-4 bundle list -output json
assert_eq "federated bundles left" "[]" "$(py json-get "$OUT/bundle-list-4.out" bundles)"
spire_cli show-full-2 entry show -entryID "$FULL_ID" -output json
assert_eq "federates_with after dissociate" "" "$(py entries-full "$OUT/show-full-2.out" | cut -f14)"
spire_cli bundle-count-2 bundle count
assert_match "bundle count" '^1 bundle$' "$(cat "$OUT/bundle-count-2.out")"

is_running server || fail "server exited"
echo PASS

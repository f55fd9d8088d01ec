#!/usr/bin/env bash
# A raw grpc C-core client (Python grpcio with stubs generated from proto/, a plain
# insecure_channel("unix:///...") that sends the percent-encoded socket path as :authority)
# calls SPIRE's EntryAPI on the server's admin socket: BatchCreateEntry, CountEntries,
# GetEntry, ListEntries by SPIFFE ID, BatchUpdateEntry, BatchDeleteEntry, NotFound after
# delete; the entry it leaves is then cross-checked with the real spire-server CLI.
# SERVER_IMPL=spire runs it against spire-server v1.13.3 (the control).
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
source "$INTEROP_DIR/lib/server.sh"
source "$INTEROP_DIR/lib/agent.sh"

require_bin "$SPIRE_SERVER" "$PYENV_PY"
TD="spiffe://$TRUST_DOMAIN"

step "start the server under test ($SERVER_IMPL)"
write_server_conf "$WORKDIR/server"
start_server

step "grpcio EntryAPI calls on $SERVER_SOCK"
must entry-api "$PYENV_PY" "$INTEROP_DIR/py/entry_api.py" -socket "$SERVER_SOCK" \
    -td "$TRUST_DOMAIN" -parent /spire/agent/grpcio
assert_file_contains "deleted entry" "deleted entry: NOT_FOUND" "$OUT/entry-api.out"
read -r _ KEEP_ID KEEP_SPIFFE < <(grep '^KEEP ' "$OUT/entry-api.out")

step "spire-server entry show sees what grpcio left"
spire_cli show entry show -entryID "$KEEP_ID"
py entries "$OUT/show.out" >"$OUT/show.tsv"
IFS=$'\t' read -r ID SPIFFE PARENT SELS X509TTL _ <"$OUT/show.tsv"
assert_eq "entry ID" "$KEEP_ID" "$ID"
assert_eq "SPIFFE ID" "$KEEP_SPIFFE" "$SPIFFE"
assert_eq "parent ID" "$TD/spire/agent/grpcio" "$PARENT"
assert_eq "selectors" "unix:uid:1001" "$SELS"
assert_eq "updated X509-SVID TTL" 1200 "$X509TTL"
spire_cli count entry count
assert_match "entry count" '(^|[^0-9])1([^0-9]|$)' "$(cat "$OUT/count.out")"
echo PASS

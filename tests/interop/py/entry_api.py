#!/usr/bin/env python3
"""A raw grpc C-core client (Python grpcio, stubs generated from proto/ by build.sh) calling
SPIRE's EntryAPI on a server's admin socket. Plain `grpc.insecure_channel("unix:///path")`:
C-core sends the percent-encoded socket path as :authority; nothing overrides it.

  entry_api.py -socket PATH -td TD -parent ID

Creates two entries, counts, gets, lists by SPIFFE ID, updates one (TTL), deletes one and
checks the deleted one is NotFound; prints `KEEP <id> <spiffe id>` for the entry left and
exits 0, or prints `entry_api.py: FAIL: <why>` and exits 1.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(sys.executable), "..", "gen"))

import grpc  # noqa: E402
from spire.api.server.entry.v1 import entry_pb2, entry_pb2_grpc  # noqa: E402
from spire.api.types import types_pb2  # noqa: E402


def fail(why):
    print(f"entry_api.py: FAIL: {why}", file=sys.stderr)
    sys.exit(1)


def spiffe_id(td, path):
    return types_pb2.SPIFFEID(trust_domain=td, path=path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("-socket", required=True)
    p.add_argument("-td", required=True)
    p.add_argument("-parent", required=True, help="parent SPIFFE ID path, e.g. /spire/agent/x")
    args = p.parse_args()
    channel = grpc.insecure_channel(f"unix://{args.socket}")
    stub = entry_pb2_grpc.EntryStub(channel)
    parent = spiffe_id(args.td, args.parent)

    before = stub.CountEntries(entry_pb2.CountEntriesRequest(), timeout=30).count
    new = [
        types_pb2.Entry(
            spiffe_id=spiffe_id(args.td, f"/grpcio/{name}"),
            parent_id=parent,
            selectors=[types_pb2.Selector(type="unix", value=f"uid:{uid}")],
            x509_svid_ttl=600,
        )
        for name, uid in (("keep", 1001), ("drop", 1002))
    ]
    created = stub.BatchCreateEntry(entry_pb2.BatchCreateEntryRequest(entries=new), timeout=30)
    if [r.status.code for r in created.results] != [0, 0]:
        fail(f"BatchCreateEntry results {created.results}")
    keep, drop = (r.entry.id for r in created.results)

    count = stub.CountEntries(entry_pb2.CountEntriesRequest(), timeout=30).count
    if count != before + 2:
        fail(f"CountEntries {count}, want {before + 2}")

    got = stub.GetEntry(entry_pb2.GetEntryRequest(id=keep), timeout=30)
    if got.spiffe_id.path != "/grpcio/keep" or got.parent_id.path != args.parent:
        fail(f"GetEntry returned {got}")

    listed = stub.ListEntries(
        entry_pb2.ListEntriesRequest(
            filter=entry_pb2.ListEntriesRequest.Filter(by_spiffe_id=spiffe_id(args.td, "/grpcio/drop"))
        ),
        timeout=30,
    )
    if [e.id for e in listed.entries] != [drop]:
        fail(f"ListEntries by SPIFFE ID returned {[e.id for e in listed.entries]}, want [{drop}]")

    got.x509_svid_ttl = 1200
    updated = stub.BatchUpdateEntry(
        entry_pb2.BatchUpdateEntryRequest(
            entries=[got], input_mask=types_pb2.EntryMask(x509_svid_ttl=True)
        ),
        timeout=30,
    )
    if updated.results[0].status.code != 0:
        fail(f"BatchUpdateEntry {updated.results[0].status}")
    again = stub.GetEntry(entry_pb2.GetEntryRequest(id=keep), timeout=30)
    if again.x509_svid_ttl != 1200:
        fail(f"after update x509_svid_ttl={again.x509_svid_ttl}, want 1200")

    deleted = stub.BatchDeleteEntry(entry_pb2.BatchDeleteEntryRequest(ids=[drop]), timeout=30)
    if [r.status.code for r in deleted.results] != [0]:
        fail(f"BatchDeleteEntry {deleted.results}")
    try:
        stub.GetEntry(entry_pb2.GetEntryRequest(id=drop), timeout=30)
        fail("a deleted entry is still there")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            fail(f"GetEntry of a deleted entry: {e.code()} {e.details()}, want NOT_FOUND")
        print(f"deleted entry: {e.code().name} {e.details()!r}")
    print(f"KEEP {keep} spiffe://{args.td}/grpcio/keep")


if __name__ == "__main__":
    main()

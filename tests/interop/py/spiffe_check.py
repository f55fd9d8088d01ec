#!/usr/bin/env python3
"""py-spiffe (grpc C-core) Workload API checks, the Python twin of cmd/spiffe-check.

Every subcommand exits 0 when its check holds, else prints
`spiffe_check.py <cmd>: FAIL: <why>` and exits 1. The socket comes from `-addr` or
SPIFFE_ENDPOINT_SOCKET (`unix:///path`); the client is py-spiffe's own, untouched: no
channel option, no authority override.

  x509  -addr A -expect ID            WorkloadApiClient.fetch_x509_context and X509Source:
                                      default SVID has ID; every SVID's chain verified to
                                      the bundle with cryptography's X.509 path validation;
                                      the key matches the leaf
  jwt   -addr A -audience AUD -expect ID
                                      fetch_jwt_svid; validate_jwt_svid for AUD (ok) and a
                                      wrong audience (refused, SPIRE's message); JwtSource;
                                      local parse_and_validate against fetch_jwt_bundles
  watch -addr A -rotations N -timeout S [-expect ID]
                                      stream_x509_contexts until N new leaves, each verified
  error -addr A                       a workload with no entry: PermissionDenied
                                      "no identity issued"
"""

import argparse
import datetime
import sys
import threading

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification
from spiffe import JwtSource, JwtSvid, SpiffeId, TrustDomain, WorkloadApiClient, X509Source
from spiffe.workloadapi.errors import FetchX509SvidError, ValidateJwtSvidError

CMD = "?"


def fail(why):
    print(f"spiffe_check.py {CMD}: FAIL: {why}", file=sys.stderr)
    sys.exit(1)


def public_der(key):
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def verify_svid(svid, bundle_set, now=None):
    """Verifies one X509Svid against the bundle of its trust domain with cryptography's
    RFC 5280 path validation (client verifier: the SVID must be usable for client auth)."""
    bundle = bundle_set.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain)
    if bundle is None or not bundle.x509_authorities:
        fail(f"no X.509 bundle for {svid.spiffe_id.trust_domain}")
    store = verification.Store(list(bundle.x509_authorities))
    builder = verification.PolicyBuilder().store(store)
    if now is not None:
        builder = builder.time(now)
    verifier = builder.build_client_verifier()
    chain = svid.cert_chain
    try:
        verified = verifier.verify(chain[0], chain[1:])
    except verification.VerificationError as e:
        fail(f"{svid.spiffe_id}: chain does not verify to the bundle: {e}")
    uris = [
        n.value
        for n in (verified.subjects or [])
        if isinstance(n, x509.UniformResourceIdentifier)
    ]
    if uris != [str(svid.spiffe_id)]:
        fail(f"verified leaf names {uris}, want [{svid.spiffe_id}]")
    if public_der(svid.private_key.public_key()) != public_der(chain[0].public_key()):
        fail(f"{svid.spiffe_id}: private key does not match the leaf")


def check_x509(args):
    client = WorkloadApiClient(args.addr)
    try:
        ctx = client.fetch_x509_context(timeout=30)
    finally:
        client.close()
    got = str(ctx.default_svid.spiffe_id)
    if got != args.expect:
        fail(f"default SVID is {got}, want {args.expect}")
    for svid in ctx.x509_svids:
        verify_svid(svid, ctx.x509_bundle_set)
    with X509Source(socket_path=args.addr, timeout_in_seconds=30) as source:
        if str(source.svid.spiffe_id) != args.expect:
            fail(f"X509Source SVID is {source.svid.spiffe_id}, want {args.expect}")
        verify_svid(source.svid, source.get_x509_context().x509_bundle_set)
    leaf = ctx.default_svid.leaf
    print(f"SPIFFE ID: {got}")
    print(f"Expires: {leaf.not_valid_after_utc.isoformat()}")
    print(f"SVIDs: {len(ctx.x509_svids)}")


def check_jwt(args):
    client = WorkloadApiClient(args.addr)
    try:
        svid = client.fetch_jwt_svid(audience={args.audience}, timeout=30)
        if str(svid.spiffe_id) != args.expect:
            fail(f"JWT-SVID is for {svid.spiffe_id}, want {args.expect}")
        validated = client.validate_jwt_svid(svid.token, args.audience, timeout=30)
        if str(validated.spiffe_id) != args.expect:
            fail(f"validated SPIFFE ID {validated.spiffe_id}, want {args.expect}")
        wrong = "not-" + args.audience
        try:
            client.validate_jwt_svid(svid.token, wrong, timeout=30)
            fail(f"validate_jwt_svid accepted the wrong audience {wrong}")
        except ValidateJwtSvidError as e:
            want = f'expected audience in ["{wrong}"] (audience=["{args.audience}"])'
            if want not in str(e):
                fail(f"wrong audience refused with {e!r}, want SPIRE's text {want!r}")
        bundles = client.fetch_jwt_bundles(timeout=30)
    finally:
        client.close()
    td = TrustDomain(SpiffeId(args.expect).trust_domain.name)
    bundle = bundles.get_bundle_for_trust_domain(td)
    if bundle is None or not bundle.jwt_authorities:
        fail(f"no JWT bundle for {td}")
    JwtSvid.parse_and_validate(svid.token, bundle, {args.audience})
    try:
        JwtSvid.parse_and_validate(svid.token, bundle, {"not-" + args.audience})
        fail("local validation accepted the wrong audience")
    except Exception as e:  # noqa: BLE001 - any refusal is right
        if "FAIL" in str(e):
            raise
    with JwtSource(socket_path=args.addr, timeout_in_seconds=30) as source:
        from_source = source.fetch_svid(audience={args.audience})
        if str(from_source.spiffe_id) != args.expect:
            fail(f"JwtSource SVID is for {from_source.spiffe_id}")
        JwtSvid.parse_and_validate(
            from_source.token, source.get_bundle_for_trust_domain(td), {args.audience}
        )
    print(f"SPIFFE ID: {svid.spiffe_id}")
    print(f"Audience: {args.audience}")


def check_watch(args):
    client = WorkloadApiClient(args.addr)
    lock = threading.Condition()
    state = {"serials": [], "errors": [], "failure": None}

    def on_success(ctx):
        with lock:
            try:
                svid = ctx.default_svid
                if args.expect and str(svid.spiffe_id) != args.expect:
                    state["failure"] = f"watch got {svid.spiffe_id}, want {args.expect}"
                verify_svid(svid, ctx.x509_bundle_set)
                serial = svid.leaf.serial_number
                if not state["serials"] or state["serials"][-1] != serial:
                    state["serials"].append(serial)
            except SystemExit:
                state["failure"] = "an update did not verify"
            lock.notify_all()

    def on_error(err):
        with lock:
            state["errors"].append(repr(err))
            lock.notify_all()

    handle = client.stream_x509_contexts(on_success, on_error)
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=args.timeout)
    with lock:
        while len(state["serials"]) < args.rotations + 1 and state["failure"] is None:
            left = (deadline - datetime.datetime.now()).total_seconds()
            if left <= 0:
                break
            lock.wait(left)
    handle.cancel()
    client.close()
    if state["failure"]:
        fail(state["failure"])
    seen = len(state["serials"]) - 1
    if seen < args.rotations:
        fail(f"saw {seen} rotations in {args.timeout}s, want {args.rotations}; errors {state['errors']}")
    print(f"Rotations: {seen}")


def check_error(args):
    client = WorkloadApiClient(args.addr)
    try:
        client.fetch_x509_svid(timeout=30)
        fail("a workload without an entry got an X509-SVID")
    except FetchX509SvidError as e:
        if "no identity issued" not in str(e):
            fail(f"refused with {e!r}, want PermissionDenied 'no identity issued'")
    finally:
        client.close()
    print("No identity: no identity issued")


def main():
    global CMD
    parser = argparse.ArgumentParser(prog="spiffe_check.py")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("x509", "jwt", "watch", "error"):
        p = sub.add_parser(name)
        p.add_argument("-addr", default=None)
        p.add_argument("-expect", default="")
        p.add_argument("-audience", default="spiffe-check")
        p.add_argument("-rotations", type=int, default=2)
        p.add_argument("-timeout", type=float, default=60)
    args = parser.parse_args()
    CMD = args.cmd
    {"x509": check_x509, "jwt": check_jwt, "watch": check_watch, "error": check_error}[args.cmd](args)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Sends the same failing Workload API and SDS requests to spire-agent and signet-agent and
compares the gRPC status code and message of every answer (grpcio, C-core, plain channels).

  error_table.py -spire SOCK -signet SOCK -td TD [-no-identity]

Prints one row per request (`same` or `DIFF`, then both answers) and exits 1 if any differ.
With -no-identity the caller is expected to match no entry (run it as another gid).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(sys.executable), "..", "gen"))

import grpc  # noqa: E402
import jwt  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

import workload_pb2 as wl  # noqa: E402

HEADER = (("workload.spiffe.io", "true"),)
SDS = "/envoy.service.secret.v3.SecretDiscoveryService/"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


def field(num, payload):
    """A length-delimited protobuf field."""
    data = payload.encode() if isinstance(payload, str) else payload
    out, n = bytes([num << 3 | 2]), len(data)
    while n >= 0x80:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n]) + data


def discovery_request(names):
    return b"".join(field(3, n) for n in names) + field(4, SECRET_TYPE)


def outcome(thunk):
    try:
        thunk()
        return ("OK", "")
    except grpc.RpcError as e:
        return (e.code().name, e.details() or "")


class Agent:
    def __init__(self, socket):
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        ident = lambda b: b  # noqa: E731

        def method(kind, name, req, resp):
            return getattr(self.channel, kind)(
                "/SpiffeWorkloadAPI/" + name,
                request_serializer=req.SerializeToString,
                response_deserializer=resp.FromString,
            )

        self.x509 = method("unary_stream", "FetchX509SVID", wl.X509SVIDRequest, wl.X509SVIDResponse)
        self.x509_bundles = method(
            "unary_stream", "FetchX509Bundles", wl.X509BundlesRequest, wl.X509BundlesResponse
        )
        self.jwt = method("unary_unary", "FetchJWTSVID", wl.JWTSVIDRequest, wl.JWTSVIDResponse)
        self.jwt_bundles = method(
            "unary_stream", "FetchJWTBundles", wl.JWTBundlesRequest, wl.JWTBundlesResponse
        )
        self.validate = method(
            "unary_unary", "ValidateJWTSVID", wl.ValidateJWTSVIDRequest, wl.ValidateJWTSVIDResponse
        )
        self.sds_stream = self.channel.stream_stream(
            SDS + "StreamSecrets", request_serializer=ident, response_deserializer=ident
        )
        self.sds_fetch = self.channel.unary_unary(
            SDS + "FetchSecrets", request_serializer=ident, response_deserializer=ident
        )
        self.sds_delta = self.channel.stream_stream(
            SDS + "DeltaSecrets", request_serializer=ident, response_deserializer=ident
        )

    def token(self, audience):
        return self.jwt(wl.JWTSVIDRequest(audience=[audience]), metadata=HEADER, timeout=30).svids[0].svid


def first(stream_call):
    return lambda: next(iter(stream_call()))


def cases(agent, td, no_identity):
    """(name, thunk) for every request; each thunk raises grpc.RpcError or returns."""
    x509 = lambda md: first(lambda: agent.x509(wl.X509SVIDRequest(), metadata=md, timeout=30))  # noqa: E731
    if no_identity:
        return [
            ("FetchX509SVID, no identity", x509(HEADER)),
            ("FetchX509Bundles, no identity",
             first(lambda: agent.x509_bundles(wl.X509BundlesRequest(), metadata=HEADER, timeout=30))),
            ("FetchJWTSVID, no identity",
             lambda: agent.jwt(wl.JWTSVIDRequest(audience=["a"]), metadata=HEADER, timeout=30)),
            ("FetchJWTBundles, no identity",
             first(lambda: agent.jwt_bundles(wl.JWTBundlesRequest(), metadata=HEADER, timeout=30))),
            ("SDS StreamSecrets default, no identity",
             first(lambda: agent.sds_stream(iter([discovery_request(["default"])]), timeout=30))),
        ]
    token = agent.token("aud1")
    key = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    foreign = jwt.encode(
        {"sub": f"spiffe://{td}/x", "aud": ["aud1"], "exp": now + 300, "iat": now},
        key, algorithm="ES256", headers={"kid": "not-a-known-key"},
    )
    other_td = jwt.encode(
        {"sub": "spiffe://elsewhere.test/x", "aud": ["aud1"], "exp": now + 300},
        key, algorithm="ES256", headers={"kid": "k"},
    )
    validate = lambda aud, svid: lambda: agent.validate(  # noqa: E731
        wl.ValidateJWTSVIDRequest(audience=aud, svid=svid), metadata=HEADER, timeout=30)
    fetch_jwt = lambda aud, sid, md=HEADER: lambda: agent.jwt(  # noqa: E731
        wl.JWTSVIDRequest(audience=aud, spiffe_id=sid), metadata=md, timeout=30)
    return [
        ("FetchX509SVID without the security header", x509(())),
        ("FetchX509SVID with workload.spiffe.io: false", x509((("workload.spiffe.io", "false"),))),
        ("FetchJWTSVID without the security header", fetch_jwt(["a"], "", ())),
        ("ValidateJWTSVID without the security header", lambda: agent.validate(
            wl.ValidateJWTSVIDRequest(audience="a", svid=token), timeout=30)),
        ("FetchJWTSVID without audience", fetch_jwt([], "")),
        ("FetchJWTSVID with a malformed spiffe_id", fetch_jwt(["a"], "not a spiffe id")),
        ("FetchJWTSVID for an ID not entitled", fetch_jwt(["a"], f"spiffe://{td}/not-mine")),
        ("ValidateJWTSVID without audience", validate("", token)),
        ("ValidateJWTSVID without svid", validate("aud1", "")),
        ("ValidateJWTSVID with a malformed token", validate("aud1", "not.a.jwt")),
        ("ValidateJWTSVID with two parts", validate("aud1", "abc.def")),
        ("ValidateJWTSVID with a bad base64 byte", validate("aud1", "abcd.ab!c.xyzw")),
        ("ValidateJWTSVID with the wrong audience", validate("wrong-aud", token)),
        ("ValidateJWTSVID signed by an unknown key", validate("aud1", foreign)),
        ("ValidateJWTSVID for an unknown trust domain", validate("aud1", other_td)),
        ("SDS StreamSecrets for a name not served",
         first(lambda: agent.sds_stream(iter([discovery_request([f"spiffe://{td}/not-mine"])]), timeout=30))),
        ("SDS FetchSecrets for a name not served",
         lambda: agent.sds_fetch(discovery_request([f"spiffe://{td}/not-mine"]), timeout=30)),
        ("SDS DeltaSecrets", first(lambda: agent.sds_delta(iter([b""]), timeout=30))),
    ]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("-spire", required=True)
    p.add_argument("-signet", required=True)
    p.add_argument("-td", required=True)
    p.add_argument("-no-identity", action="store_true")
    args = p.parse_args()
    spire, signet = Agent(args.spire), Agent(args.signet)
    diffs = 0
    for (name, a), (_, b) in zip(cases(spire, args.td, args.no_identity),
                                 cases(signet, args.td, args.no_identity)):
        want, got = outcome(a), outcome(b)
        same = want == got and want[0] != "OK"
        diffs += not same
        print(f"{'same' if same else 'DIFF'} | {name} | spire-agent: {want[0]} {want[1]!r}"
              + ("" if same else f" | signet-agent: {got[0]} {got[1]!r}"))
    print(f"{diffs} difference(s)")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()

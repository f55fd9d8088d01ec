#!/usr/bin/env python3
"""An OIDC relying party nobody here wrote (PyJWT's PyJWKClient, from the discovery
document) verifying JWT-SVIDs against signet-server's built-in OIDC discovery listener.

Every subcommand exits 0 when its check holds, else prints
`oidc_check.py <cmd>: FAIL: <why>` and exits 1. HTTPS trusts only `-cafile`.

  verify -issuer URL -cafile F -audience AUD -expect ID -kids N -timeout S -- FETCH_CMD...
        reads `<issuer>/.well-known/openid-configuration`, makes ONE PyJWKClient on its
        `jwks_uri`, then runs FETCH_CMD (prints a JWT-SVID) every second and verifies each new
        token (signature by `kid`, `aud`, `iss`, `sub` = ID, `exp`) until tokens signed by N
        distinct keys have verified (a JWT key rotation when N > 1); a wrong audience and a
        tampered signature must be refused
  tls -url URL -cafile F -timeout S
        retries until an HTTPS GET of URL succeeds trusting only F (a reloaded certificate)
"""

import argparse
import json
import re
import ssl
import subprocess
import sys
import time
import urllib.request

import jwt

CMD = "?"
JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def fail(why):
    print(f"oidc_check.py {CMD}: FAIL: {why}", file=sys.stderr)
    sys.exit(1)


def context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    return ctx


def get_json(url, ctx):
    with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
        if resp.status != 200:
            fail(f"GET {url}: HTTP {resp.status}")
        return json.loads(resp.read().decode())


def fetch_token(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        return None, out.stderr.strip()
    found = JWT_RE.search(out.stdout)
    return (found.group(0) if found else None), out.stdout.strip()


def verify(args):
    ctx = context(args.cafile)
    doc = get_json(args.issuer + "/.well-known/openid-configuration", ctx)
    print(f"discovery document: {json.dumps(doc, sort_keys=True)}")
    if doc.get("issuer") != args.issuer:
        fail(f"issuer {doc.get('issuer')!r}, want {args.issuer!r}")
    for key in ("jwks_uri", "id_token_signing_alg_values_supported", "response_types_supported",
                "subject_types_supported"):
        if key not in doc:
            fail(f"discovery document has no {key}")
    algorithms = doc["id_token_signing_alg_values_supported"]
    client = jwt.PyJWKClient(doc["jwks_uri"], cache_keys=True, ssl_context=ctx)
    kids = []
    seen = set()
    deadline = time.monotonic() + args.timeout
    while len(kids) < args.kids:
        if time.monotonic() > deadline:
            fail(f"tokens from {len(kids)} key(s) ({kids}) within {args.timeout}s, want {args.kids}")
        token, out = fetch_token(args.fetch)
        if token is None or token in seen:
            if token is None:
                print(f"no token yet: {out[:300]}")
            time.sleep(1)
            continue
        seen.add(token)
        kid = jwt.get_unverified_header(token).get("kid")
        signing_key = client.get_signing_key_from_jwt(token)
        claims = jwt.decode(token, signing_key.key, algorithms=algorithms,
                            audience=args.audience, issuer=doc["issuer"],
                            options={"require": ["exp", "iat", "sub", "aud", "iss"]})
        if claims["sub"] != args.expect:
            fail(f"sub {claims['sub']!r}, want {args.expect!r}")
        if kid not in kids:
            kids.append(kid)
            print(f"verified a JWT-SVID signed by kid {kid} ({len(kids)}/{args.kids}) "
                  f"alg {jwt.get_unverified_header(token).get('alg')}, exp {claims['exp']}")
        try:
            jwt.decode(token, signing_key.key, algorithms=algorithms, audience="not-" + args.audience,
                       issuer=doc["issuer"])
            fail("a wrong audience verified")
        except jwt.InvalidAudienceError:
            pass
        head, body, sig = token.split(".")
        tampered = ".".join([head, body, ("A" if sig[0] != "A" else "B") + sig[1:]])
        try:
            jwt.decode(tampered, signing_key.key, algorithms=algorithms, audience=args.audience,
                       issuer=doc["issuer"])
            fail("a tampered signature verified")
        except jwt.InvalidSignatureError:
            pass
        time.sleep(1)
    print(f"Verified JWT-SVIDs from {len(kids)} keys: {' '.join(kids)}")


def tls(args):
    ctx = context(args.cafile)
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            get_json(args.url, ctx)
            print(f"GET {args.url} verified with {args.cafile}")
            return
        except (ssl.SSLError, urllib.error.URLError) as e:
            if time.monotonic() > deadline:
                fail(f"GET {args.url} with {args.cafile}: {e}")
            time.sleep(1)


def main():
    global CMD
    p = argparse.ArgumentParser(prefix_chars="-")
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify")
    v.add_argument("-issuer", required=True)
    v.add_argument("-cafile", required=True)
    v.add_argument("-audience", required=True)
    v.add_argument("-expect", required=True)
    v.add_argument("-kids", type=int, default=1)
    v.add_argument("-timeout", type=float, default=60)
    v.add_argument("fetch", nargs=argparse.REMAINDER)
    t = sub.add_parser("tls")
    t.add_argument("-url", required=True)
    t.add_argument("-cafile", required=True)
    t.add_argument("-timeout", type=float, default=30)
    args = p.parse_args()
    CMD = args.cmd
    if CMD == "verify":
        if args.fetch and args.fetch[0] == "--":
            args.fetch = args.fetch[1:]
        if not args.fetch:
            fail("no fetch command after --")
        verify(args)
    else:
        tls(args)


if __name__ == "__main__":
    main()
